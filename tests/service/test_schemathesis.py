"""A bounded schemathesis run over the OpenAPI schema: no operation answers 5xx, to
valid input or to input that breaks the schema (negative mode).

Runs in-process (ASGI) on SQLite and on PostgreSQL (a random schema, dropped afterwards;
skipped with the reason when no server answers, a failure when ``CI`` is set), authenticated
as a user holding every role (so the fuzzer reaches the route bodies, not only the 401s),
with a few examples per operation (derandomized, so both backends get the same requests).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.service.conftest import Api, Sealed, make_api, new_case, new_user
from zhichao.service import accounts
from zhichao.service.db import drop_schema

pytestmark = pytest.mark.slow  # minutes of simulated traffic or processes


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             sealed: Sealed) -> Iterator[Api]:
    api = make_api(request.param, tmp_path_factory.mktemp("fuzz"), sealed,
                   owner_query_min_duration_ms=0, owner_query_per_client_per_minute=100_000,
                   owner_query_per_plate_per_hour=100_000, login_per_client_per_minute=100_000)
    everyone = new_user(api.sessions, *accounts.ROLES_ZH, station_id="S001")
    r = api.client.post("/api/v1/auth/login", json={"username": everyone.username,
                                                     "password": "correct horse battery staple"})
    api.tokens["all"] = r.json()["token"]
    for _ in range(3):
        new_case(api.sessions, sealed)
    yield api
    engine = api.client.app.state.engine
    if request.param == "postgresql":
        drop_schema(engine)
    engine.dispose()


def _schema() -> schemathesis.BaseSchema:
    return schemathesis.pytest.from_fixture("fuzz_schema")


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_api: Api) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_api.client.app)
    # valid and schema-violating data (wrong types, overlong strings, NUL and other control
    # characters); test_hardening_input.py walks every route with non-UTF-8 bytes besides
    schema.config.generation.update(modes=list(schemathesis.GenerationMode), allow_x00=True)
    return schema


schema = _schema()


@schema.parametrize()
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx(case: schemathesis.Case, fuzz_api: Api, tmp_path: Path
                                  ) -> None:
    del tmp_path
    if case.path == "/api/v1/auth/logout":
        return  # would revoke the fuzzer's token; logout is tested in test_api.py
    case.headers = {**(case.headers or {}),
                    "Authorization": f"Bearer {fuzz_api.tokens['all']}"}
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.status_code,
                                        response.text[:500])
