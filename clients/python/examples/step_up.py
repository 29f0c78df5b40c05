"""A minimal sign-in step-up: verify the code a user typed and decide.

python examples/step_up.py 127.0.0.1:50051 alice 123456
python examples/step_up.py 127.0.0.1:50051 alice k7q2-9xmf-w4c8   # a recovery code
"""

from __future__ import annotations

import sys

from totpd_client import ErrorReason, TotpdClient, TotpdError, VerifyResult


def step_up(totpd: TotpdClient, account_id: str, code: str) -> bool:
    """Digits are the app's code; anything else is taken for a recovery code."""
    if not (code.isascii() and code.isdigit()):
        return recover(totpd, account_id, code)
    try:
        outcome = totpd.verify(account_id, code)
    except TotpdError as err:
        if err.reason is ErrorReason.MALFORMED_CODE:
            print("a code is digits only, nothing else")
        elif err.reason is ErrorReason.RATE_LIMITED:
            print(f"too many failed codes from this service: pause {err.retry_after or 0:.0f} s")
        else:
            print(f"cannot verify now ({err.code.name}, {err.reason.name})")
        return False
    if outcome.result is VerifyResult.VALID:
        print("step-up granted")
    elif outcome.result is VerifyResult.REPLAYED:
        print("that code was already used: wait for the next one")
    elif outcome.result is VerifyResult.LOCKED and outcome.unlock_required:
        print("locked: ask support to unlock the account")
    elif outcome.result is VerifyResult.LOCKED:
        print(f"too many attempts: try again in {outcome.retry_after:.0f} s")
    else:
        print(f"wrong code, {outcome.attempts_left} attempts left")
    return outcome.valid


def recover(totpd: TotpdClient, account_id: str, code: str) -> bool:
    """A recovery code, for a user without their phone: each works once."""
    try:
        checked = totpd.verify_recovery_code(account_id, code)
    except TotpdError as err:
        print(f"not a recovery code ({err.code.name}, {err.reason.name})")
        return False
    result = checked.outcome.result
    if result is VerifyResult.VALID:
        print(f"step-up granted; {checked.status.remaining} recovery codes left")
    elif result is VerifyResult.REPLAYED:
        print("that recovery code was already used")
    elif result is VerifyResult.LOCKED:
        print("locked: ask support to unlock the account")
    else:
        print(f"wrong recovery code, {checked.outcome.attempts_left} attempts left")
    return checked.valid


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: step_up.py HOST:PORT ACCOUNT CODE")
    with TotpdClient(sys.argv[1], insecure=True) as client:
        sys.exit(0 if step_up(client, sys.argv[2], sys.argv[3]) else 1)
