"""Spreading calls over replicas: round_robin over an `ipv4:` multi-address target
with a retry policy in the service config, as the README shows. Two real servers
with separate databases, so where each enrollment landed is visible."""

from __future__ import annotations

import json
import uuid

from conftest import running_totpd

from totpd_client import TotpdClient

SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": "totpd.v1.TotpService"}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.1s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}


def test_round_robin_spreads_calls_over_every_replica(totpd_target: str) -> None:
    with running_totpd() as second:
        target = f"ipv4:{totpd_target},{second}"
        options = [("grpc.service_config", json.dumps(SERVICE_CONFIG))]
        accounts = [f"py-rr-{uuid.uuid4()}" for _ in range(6)]
        with TotpdClient(target, insecure=True, timeout=10, options=options) as both:
            for account in accounts:
                both.enroll(account, "Pixel 8")
        landed = []
        for replica in (totpd_target, second):
            with TotpdClient(replica, insecure=True, timeout=10) as one:
                found = [one.list_factors(a, include_inactive=True) for a in accounts]
                landed.append(sum(map(len, found)))
    # Each got some (round_robin picks among the connections ready so far, so the
    # first calls may all go to the first one up), and every one landed once.
    assert min(landed) > 0
    assert sum(landed) == len(accounts)
