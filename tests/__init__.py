"""The test suite. Its helper modules (not test modules) get pytest's assertion
rewriting too, so a failed check inside a helper says what it compared."""

import pytest

pytest.register_assert_rewrite(
    "tests.enrollments",
    "tests.totp_oracle",
    "tests.cli.processes",
    "tests.rpc.harness",
)
