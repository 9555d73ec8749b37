"""Lower stages never import higher ones (devices <- weighing <- ... <- service)."""

from __future__ import annotations

import ast
from pathlib import Path

import zhichao

PACKAGE_DIR = Path(zhichao.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_stage_imports_a_higher_stage() -> None:
    rank = {stage: i for i, stage in enumerate(zhichao.STAGES)}
    violations: list[str] = []
    for stage in zhichao.STAGES:
        for path in (PACKAGE_DIR / stage).rglob("*.py"):
            for module in _imported_modules(path):
                parts = module.split(".")
                if len(parts) >= 2 and parts[0] == "zhichao" and parts[1] in rank:
                    if rank[parts[1]] > rank[stage]:
                        violations.append(f"{path.relative_to(PACKAGE_DIR)} imports {module}")
    assert violations == []
