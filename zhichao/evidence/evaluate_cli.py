"""``zhichao evaluate CASE.json [--json]``: the verdict by the law, without sealing.

Runs the same gate and penalty proposal as ``zhichao seal`` on the same case file
(:func:`zhichao.evidence.eligibility.evaluate`, rules from the site's jurisdiction) and
prints the decision (enforceable / manual review / unusable, with every reason), the limit
and its basis with the stricter limits unseen facts would give, the tolerance and where it
comes from, the excess and the proposed penalty with its basis. Nothing is signed, logged
or rendered. The case file is documented in ``docs/evidence.md`` ("zhichao evaluate").
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from zhichao.common import BEIJING as _BEIJING
from zhichao.evidence.eligibility import STATUS_ZH, Eligibility, evaluate
from zhichao.evidence.errors import EvidenceError, RuleError
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.rules import RuleSet, load_rule_set


def rules_for(case: CaseInputs, rules_dir: Path | None) -> RuleSet | None:
    """The rule set of the site's jurisdiction, as ``seal_package`` loads it."""
    if case.site is None:
        return None
    try:
        return load_rule_set(case.site.jurisdiction, rules_dir)
    except RuleError:
        return None


def decision_json(case: CaseInputs, result: Eligibility) -> dict[str, Any]:
    """The decision as data: what ``--json`` prints, and what a sealed manifest holds."""
    return {
        "format": "zhichao.decision/1",
        "eligibility": result.to_json(),
        "penalty": None if result.penalty is None else result.penalty.to_json(),
        "rule_version_at_act": None if result.rule is None else result.rule.version,
        "is_decision": False,
    }


def format_beijing(t: datetime) -> str:
    return t.astimezone(_BEIJING).strftime("%Y-%m-%d %H:%M:%S 北京时间")


def _clock_line(case: CaseInputs, result: Eligibility) -> str:
    """Whether the station verified its reference clock (the gate's view)."""
    failed = next((r for r in result.reasons if r.code == "clock_not_verified"), None)
    check = None if case.clocks is None else case.clocks.reference_check
    if failed is not None:
        return f"时钟 clock: 未核验 not verified — {failed.detail}"
    if check is None or check.checked_utc is None:
        return "时钟 clock: —"
    return (f"时钟 clock: 已核验 verified（{check.source} {check.server}，"
            f"{format_beijing(check.checked_utc)}，偏差 offset {check.offset_ms} ms）")


def _text(case: CaseInputs, result: Eligibility) -> str:
    a = result.assessment
    lines = [f"违法时间 act: {format_beijing(case.vehicle.time_utc)}",
             f"决定 decision: {result.status} {STATUS_ZH[result.status]}",
             f"依法判定 by law (不含照片/号牌/时钟完整性): {result.status_by_law()}"]
    for r in result.reasons:
        lines.append(f"  [{r.severity}] {r.code}: {r.message_zh}（{r.basis_zh}）"
                     + (f" — {r.detail}" if r.detail else ""))
    lines.append(_clock_line(case, result))
    if a is not None:
        lines += [
            f"车型 class: {a.vehicle_class_zh or '—'} ({a.vehicle_class or '—'})",
            f"限值 limit: {a.limit_kg if a.limit_kg is not None else '—'} kg — {a.limit_basis}",
            *(f"  较严限值 stricter if: {s}" for s in a.stricter_zh),
            f"总质量 gross: {a.gross_kg} kg" + (
                f"（静态复检为证据重量 static re-weighing; 动态 WIM {a.wim_gross_kg} kg）"
                if a.weight_source == "static" else ""),
            f"允差 tolerance: {a.tolerance_kg} kg — {a.tolerance_basis_zh}"
            f"（设备误差 {a.device_mpe_kg} kg，记录扣除 {a.recorded_allowance_kg} kg）",
            f"超限 excess (after tolerance): {a.excess_kg} kg — verdict {a.verdict}",
            *(f"  待确认 unconfirmed: {u}" for u in a.unconfirmed_zh),
        ]
    p = result.penalty
    if p is None:
        lines.append("拟处罚 proposed penalty: 无 none")
    else:
        lines.append(f"拟处罚 proposed penalty: {p.to_json()['outcome_zh']} {p.fine_yuan} 元 — "
                     f"{p.basis.cite_zh()}（规则版本 {p.rule_version}）")
        lines += [f"  {s.label_zh}: {s.value} {s.unit}（{s.source.cite_zh()}）" for s in p.steps]
        lines += [f"  注: {n}" for n in p.reviewer_notes_zh]
    lines.append("仅为建议，须经技术审核和法制审核（行政处罚法第四十一条）。")
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    path = Path(args.case)
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
        case = CaseInputs.from_json(raw, str(path))
        rules = rules_for(case, Path(args.rules_dir) if args.rules_dir else None)
        result = evaluate(case, rules)
    except json.JSONDecodeError as exc:
        print(f"错误 error: {path}: JSON 格式错误，第{exc.lineno}行 (invalid JSON)",
              file=sys.stderr)
        return 2
    except (EvidenceError, OSError) as exc:
        print(f"错误 error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(decision_json(case, result), ensure_ascii=False, indent=1))
    else:
        print(_text(case, result))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "evaluate", help="the gate's decision, limit, tolerance and penalty for a case file")
    p.add_argument("case", help="case JSON: {vehicle, device, site, registration?, …}")
    p.add_argument("--json", action="store_true", help="print the decision as JSON")
    p.add_argument("--rules-dir", help="directory of reviewed rule files overriding built-ins")
    p.set_defaults(handler=_evaluate)
