"""The JSON API's routes, one module per resource (FastAPI ``APIRouter``).

``ROUTERS`` lists them in the order ``create_app`` includes them under ``/api/v1``:
``auth`` (health, login, logout, me), ``cases`` (queue, detail, package, overdue),
``case_actions`` (every workflow step, roles and separation of duties from
``zhichao.service.duties``), ``documents`` (served notice and decision PDFs, the 抄告
outbox, the retention run), ``statistics``, ``audit``, ``users`` and ``owner`` (the owner
portal's JSON and the public disclosures). Dependencies are in ``deps``, models in
``schemas``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from zhichao.service.api import (
    audit,
    auth,
    case_actions,
    cases,
    documents,
    owner,
    statistics,
    users,
)

ROUTERS: tuple[APIRouter, ...] = (auth.router, cases.router, case_actions.router,
                                  documents.router, statistics.router, audit.router,
                                  users.router, owner.router)


def routes_markdown(openapi: dict[str, Any]) -> str:
    """Who may call each route, from the app's OpenAPI schema (``x-roles``); the route
    table of ``docs/service.md`` is this text (a test compares)."""
    lines = ["| Route | Who |", "|---|---|"]
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            if "x-roles" in op:
                who = ", ".join(op["x-roles"]) or "any staff"
            elif path.startswith(("/api/v1/owner/records", "/api/v1/owner/logout")):
                who = "owner token (`X-Owner-Token`)"
            else:
                who = "public"
            lines.append(f"| `{method.upper()} {path}` | {who} |")
    return "\n".join(lines)
