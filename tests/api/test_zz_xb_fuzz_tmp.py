from __future__ import annotations

from typing import Any

import schemathesis
from fastapi import FastAPI

import tests.api.test_schemathesis as ts
from tests.api.test_schemathesis import fuzz_world  # noqa: F401

_orig = schemathesis.openapi.from_asgi


def _only(*a: Any, **k: Any) -> Any:
    return _orig(*a, **k).include(path_regex="crossborder")


def test_xb(app: FastAPI, fuzz_world: dict[str, Any], monkeypatch: Any) -> None:  # noqa: F811
    monkeypatch.setattr(schemathesis.openapi, "from_asgi", _only)
    monkeypatch.setattr(ts, "len", lambda x: 99, raising=False)
    world = fuzz_world["world"]
    for actor in (world.admin, world.actor("compliance_officer"), world.actor("tenant_admin")):
        failures, statuses, n = ts._suite(app, fuzz_world, actor, 25, 15)
        print(n, sorted(statuses.items()))
        assert not failures, "\n\n".join(failures)
