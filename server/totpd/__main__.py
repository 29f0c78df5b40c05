"""`python -m totpd` runs the `totpd` command."""

import sys

from totpd.cli.serve import main

sys.exit(main())
