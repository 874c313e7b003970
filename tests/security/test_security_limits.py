"""Finding 10: absurd numbers in specs and overrides (`timeout_seconds: 1e308`, `memory: "1e30"`) were accepted and
failed later at the agent. Now every number has bounds and must be finite: a 400 naming the field, nothing written.
(Overrides are covered with the other override checks in `test_security_overrides.py`.)"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from tenants import Tenants

pytestmark = pytest.mark.timeout(60)


BAD_SPECS = [
    ({"timeout_seconds": 1e308}, "timeout_seconds"),
    ({"timeout_seconds": 8 * 24 * 3600}, "timeout_seconds"),
    ({"timeout_seconds": float("nan")}, "timeout_seconds"),
    ({"resources": {"memory": {"request": "1e30", "limit": "1e30"}}}, "memory.request"),
    ({"resources": {"memory": {"request": 65 * 2**40, "limit": 65 * 2**40}}}, "memory.request"),
    ({"resources": {"cpu": {"request": 4097.0, "limit": 4097.0}}}, "cpu.request"),
    ({"resources": {"cpu": {"request": float("inf"), "limit": float("inf")}}}, "cpu.request"),
    ({"resources": {"gpu": {"type": "A100", "count": 1000}}}, "gpu.count"),
    ({"backoff": {"base": 1.0, "factor": 2.0, "cap": 1e308}}, "backoff"),
]


@pytest.mark.parametrize(("settings", "field"), BAD_SPECS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_SPECS)])
def test_numbers_in_a_spec_have_bounds(deployed: Tenants, settings: dict[str, Any], field: str) -> None:
    env = f"sec-limits-{uuid.uuid4().hex[:6]}"
    spec = {
        "name": f"{env}.main",
        "short_name": "main",
        "signature": "main() -> int",
        "interface_digest": "0123456789abcdef",
        "output": "int",
        **settings,
    }
    body = {
        "project": "alpha",
        "domain": "development",
        "env": env,
        "version": "v1",
        "bundle_digest": hashlib.sha256(b"bundle").hexdigest(),
        "tasks": [spec],
    }
    status, answer = deployed.call("POST", "/api/v1/deployments", body, as_="admin")
    assert (status, answer["code"]) == (400, "invalid"), answer
    assert field.split(".")[0] in answer["message"]
    assert field.split(".")[-1] in answer["message"]
    status, _ = deployed.call("GET", f"/api/v1/tasks/{env}.main?project=alpha", as_="admin")
    assert status == 404, "nothing was deployed"
