"""Which failures the client retries: a retry must not act twice.

gRPC itself already re-sends, transparently, an attempt that never left the
client; these policies decide on failures that came back from the network.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from .errors import ErrorReason, TotpdError

RetryPolicy = Callable[[TotpdError], bool]


def refused_before_work(err: TotpdError) -> bool:
    """OVERLOADED: the server refused the call before doing anything.

    The policy of calls that carry no request_id and act on every attempt
    (recovery codes, resync): an UNAVAILABLE may come after the server committed
    (a response lost on the way back, the database failing during the commit),
    and a second attempt would consume another step, burn a recovery code as
    REPLAYED, count a second failure or issue a second set.
    """
    return err.code is grpc.StatusCode.RESOURCE_EXHAUSTED and err.reason is ErrorReason.OVERLOADED


def retryable(err: TotpdError) -> bool:
    """Whether another attempt is safe and may succeed (the default policy).

    UNAVAILABLE: the server or its database was unreachable, or the response was
    lost: the request_id of enroll/confirm/disable makes that retry return the
    first result, verify answers REPLAYED at worst (ask for the next code), reads
    and unlock are idempotent. OVERLOADED: see `refused_before_work`.
    RATE_LIMITED is deliberately not retried: the caller must stop, not wait and
    guess again.
    """
    return err.code is grpc.StatusCode.UNAVAILABLE or refused_before_work(err)
