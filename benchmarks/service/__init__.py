"""Service benchmarks for totpd: BatchVerify and unary Verify through real server processes.

Run from the repository root: ``python -m benchmarks.service [--quick]`` (or ``make bench``).
See benchmarks/README.md for what each figure means.
"""
