"""The house's measurements (issue 14): each stage package's share of the package's lines,
modules above 600 lines and functions above 120 lines (migrations aside) in ``zhichao/``,
``tests/`` and ``benchmarks/``, and benchmarks that import tests.

    python3 benchmarks/layout_sizes.py

Exits 1 when a limit is broken, so it can run in a loop or a hook.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_MAX_LINES = 600
FUNCTION_MAX_LINES = 120
STAGE_MAX_SHARE = 0.30


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "migrations" not in p.parts)


def stage_shares(package: Path) -> dict[str, int]:
    """Lines per top-level subpackage of ``package`` ("(root)" for its own modules)."""
    lines: dict[str, int] = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).parts
        key = parts[0] if len(parts) > 1 else "(root)"
        lines[key] = lines.get(key, 0) + len(path.read_text(encoding="utf-8").splitlines())
    return lines


def oversized(folder: Path) -> list[str]:
    """Modules and functions over the limits, one line each."""
    found: list[str] = []
    for path in _python_files(folder):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT)
        if (n := len(text.splitlines())) > MODULE_MAX_LINES:
            found.append(f"module {name}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_MAX_LINES:
                    found.append(f"function {name}:{node.lineno} {node.name}: {length} lines")
    return found


def benchmarks_importing_tests(folder: Path) -> list[str]:
    found: list[str] = []
    for path in _python_files(folder):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "tests" or n.startswith("tests.") for n in names):
                found.append(str(path.relative_to(ROOT)))
    return found


def main() -> int:
    shares = stage_shares(ROOT / "zhichao")
    total = sum(shares.values())
    print(f"zhichao: {total} lines")
    problems: list[str] = []
    for stage, n in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:12s} {n:6d}  {100 * n / total:5.1f} %")
        if n / total > STAGE_MAX_SHARE:
            problems.append(f"stage {stage}: {100 * n / total:.1f} % of the lines")
    for folder in ("zhichao", "tests", "benchmarks"):
        problems += oversized(ROOT / folder)
    problems += [f"benchmark imports tests: {p}"
                 for p in benchmarks_importing_tests(ROOT / "benchmarks")]
    print("\n".join(problems) if problems else "no limit broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
