"""Schema-driven fuzzing of /api/v1 with schemathesis: no input may make the server fail.

The OpenAPI document is loaded from the in-process ASGI app (``from_asgi``: schemathesis calls
the app directly, no network), on a fresh store that holds one object of every kind. Calls are
made as the operator admin, who may do everything, so the generated inputs reach the services
instead of stopping at the access guard. Path ids are real objects about half of the time
(chosen from the generated value, so runs stay deterministic) and random otherwise.

Checks on every response: ``not_a_server_error`` (an unhandled exception inside the app is
raised into the test, so it fails too), ``status_code_conformance`` (every status the API
answers is documented), ``response_schema_conformance`` (success bodies and the
``{"error": ...}`` envelope match the schema) and ``content_type_conformance``.

Bounded: 25 positive and 15 negative examples per operation, derandomized, no example database.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.access_bench import Bench
from tests.support.world import World


@pytest.fixture
def fuzz_world(world: World) -> dict[str, Any]:
    """Real ids to put in generated paths, by the name of the path parameter and the path."""
    bench = Bench(world)
    a = world.a
    ids: dict[str, list[str]] = {
        "/tenants/{tenant_id}/users/": [str(a.employee.user_id), bench.new_user("a")],
        "/tenants/{tenant_id}/groups/": [bench.groups["a"], bench.new_group("a")],
        "/tenants/{tenant_id}/sites/": [bench.new_site("a")],
        "/tenants/{tenant_id}/devices/": [bench.new_device("a", a.employee.user_id)],
        "/tenants/{tenant_id}/policies/": [bench.new_policy("a")],
        "/tenants/{tenant_id}/prefix-allowances/": [bench.new_allowance("a")],
        "/declarations/": [bench.new_declaration("a"), bench.new_declaration("a")],
        "/tenants/": [str(a.id), str(world.b.id), bench.new_tenant()],
        "/pops/": [bench.new_pop(), bench.new_pop()],
        "/links/": [bench.new_link()],
        "/operator/licences/": [bench.new_licence()],
        "/operator/shareholders/": [bench.new_shareholder()],
        "/operator/staff/": [bench.new_staff()],
        "/tokens/": [bench.token(world.admin.user_id)[0]],
    }
    return {"world": world, "bench": bench, "ids": ids}


def _real_ids(case: Any, ids: dict[str, list[str]], bench: Bench) -> None:
    """Swap generated ids for real ones, about half of the time, deterministically."""
    path: str = case.operation.path.removeprefix("/api/v1")
    params = case.path_parameters
    if not params:
        return
    for name, value in list(params.items()):
        try:
            generated = uuid.UUID(str(value))
        except ValueError:
            continue  # a negative example: leave the malformed id alone
        if generated.int % 2:
            continue
        if name == "tenant_id":
            params[name] = str(bench.world.a.id)
        elif name == "pop_id":
            params[name] = bench.pop  # the PoP with interfaces; never deleted
        else:
            choices = ids.get(path.split("{" + name + "}")[0])
            if choices:
                params[name] = choices[generated.int // 2 % len(choices)]


def _fuzz(operation: Any, mode: GenerationMode, examples: int, run: Any) -> str | None:
    """Run one operation in one generation mode; the failure, if any, as text."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    def check(case: Any) -> None:
        run(case)

    try:
        check()
    except Unsatisfiable:
        return None  # nothing to make invalid (no parameters, no body)
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a FailureGroup
        return f"{operation.method.upper()} {operation.path} ({mode.value}): {exc!r}"[:2000]
    return None


def test_no_server_errors(app: FastAPI, fuzz_world: dict[str, Any]) -> None:
    world: World = fuzz_world["world"]
    bench: Bench = fuzz_world["bench"]
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    statuses: dict[str, set[int]] = {}

    def run(case: Any) -> None:
        _real_ids(case, fuzz_world["ids"], bench)
        headers = world.admin.headers
        if case.operation.path.endswith("/auth/logout"):
            headers = bench.headers(world.admin)  # logout ends the token it is called with
        response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
        case.validate_response(
            response,
            checks=[status_code_conformance, response_schema_conformance, content_type_conformance],
        )
        statuses.setdefault(case.operation.label, set()).add(response.status_code)

    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletes last, so that reads and updates meet live objects.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    assert len(operations) > 50
    for operation in operations:
        for mode, examples in ((GenerationMode.POSITIVE, 25), (GenerationMode.NEGATIVE, 15)):
            failure = _fuzz(operation, mode, examples, run)
            if failure:
                failures.append(failure)
    assert not failures, "\n\n".join(failures)
    # The run reached the services, not just the guard: most operations succeeded at least once.
    succeeded = {label for label, codes in statuses.items() if any(c < 300 for c in codes)}
    assert len(succeeded) >= len(operations) * 2 // 3, sorted(statuses.items())
