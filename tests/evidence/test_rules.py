"""Table-driven tests of the penalty rules at and around every threshold."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest

from zhichao.evidence.errors import RuleError
from zhichao.evidence.penalty import Outcome, propose_penalty
from zhichao.evidence.rules import RuleVersion, load_rule_set, parse_rule_set

T2025 = datetime(2025, 6, 1, 2, 0, tzinfo=UTC)


def _rule(jurisdiction: str, **penalty_overrides: Any) -> RuleVersion:
    raw = json.loads(
        resources.files("zhichao.evidence").joinpath("rules", f"{jurisdiction.lower()}.json")
        .read_text(encoding="utf-8")
    )
    raw["versions"][-1]["penalty"].update(penalty_overrides)  # the version in force in 2025
    return parse_rule_set(raw).in_force(T2025)


def _propose(rule: RuleVersion, excess_kg: int | str, limit_kg: int = 49000,
             allowance_kg: int = 0, prior: int | None = None) -> Any:
    limit = Decimal(limit_kg)
    return propose_penalty(
        rule, gross_weight_kg=limit + Decimal(excess_kg) + allowance_kg, limit_kg=limit,
        allowance_kg=Decimal(allowance_kg), prior_violations=prior,
    )


@pytest.mark.parametrize(
    ("excess_kg", "part_tonne", "outcome", "fine_yuan"),
    [
        (-500, "floor", Outcome.NONE, 0),
        (0, "floor", Outcome.NONE, 0),  # exactly at the limit is not over it
        ("0.001", "floor", Outcome.WARNING, 0),
        (1, "floor", Outcome.WARNING, 0),
        (1000, "floor", Outcome.WARNING, 0),  # ≤ 1 000 kg over: warning
        ("1000.5", "floor", Outcome.FINE, 500),
        (1001, "floor", Outcome.FINE, 500),
        (1001, "ceil", Outcome.FINE, 1000),
        (1001, "pro_rata", Outcome.FINE, 500),  # 500.5 yuan, rounded down
        (1999, "floor", Outcome.FINE, 500),
        (1999, "ceil", Outcome.FINE, 1000),
        (1999, "pro_rata", Outcome.FINE, 999),
        (2000, "floor", Outcome.FINE, 1000),
        (2000, "ceil", Outcome.FINE, 1000),
        (59999, "floor", Outcome.FINE, 29500),
        (59999, "ceil", Outcome.FINE, 30000),
        (60000, "floor", Outcome.FINE, 30000),  # exactly the cap
        (61000, "floor", Outcome.FINE, 30000),  # capped
        (200000, "pro_rata", Outcome.FINE, 30000),
    ],
)
def test_national_art43(excess_kg: int | str, part_tonne: str, outcome: Outcome,
                        fine_yuan: int) -> None:
    proposal = _propose(_rule("CN", part_tonne=part_tonne), excess_kg)
    assert proposal.outcome is outcome
    assert proposal.fine_yuan == fine_yuan
    assert proposal.basis.article_zh == "第四十三条第（二）项"
    for step in proposal.steps:
        assert step.source.law_zh, step


def test_national_cap_step_cites_its_article() -> None:
    proposal = _propose(_rule("CN"), 61000)
    cap = [s for s in proposal.steps if "上限" in s.label_zh]
    assert cap and cap[0].source.article_zh == "第六十四条"


def test_allowance_is_subtracted_before_the_excess() -> None:
    rule = _rule("CN")
    # 1 000 kg over the limit on the scale, 1 000 kg allowance: not over.
    assert _propose(rule, 0, allowance_kg=1000).outcome is Outcome.NONE
    assert _propose(rule, 1001, allowance_kg=2500).fine_yuan == 500


# Zhejiang 浙江省公路条例 Art. 53, limit 49 000 kg: 20 % = 9 800 kg, 50 % = 24 500 kg.
@pytest.mark.parametrize(
    ("excess_kg", "part_tonne", "outcome", "fine_yuan"),
    [
        (0, "floor", Outcome.NONE, 0),
        (1, "floor", Outcome.EDUCATION, 0),
        (9799, "floor", Outcome.EDUCATION, 0),  # just under 20 %
        # not under 20 %: the article fines; nothing (or 1 kg) in the 300/t band counts no
        # whole tonne under floor, 0 yuan, still a fine (not 批评教育)
        (9800, "floor", Outcome.FINE, 0),
        (9801, "floor", Outcome.FINE, 0),
        (9801, "ceil", Outcome.FINE, 300),
        (10800, "floor", Outcome.FINE, 300),  # 1 000 kg in the band
        (24500, "floor", Outcome.FINE, 4200),  # exactly 50 %: 14 700 kg → 14 t × 300
        (24500, "pro_rata", Outcome.FINE, 4410),
        (24501, "ceil", Outcome.FINE, 4500 + 500),  # 15 t × 300 + 1 t × 500
        (25500, "floor", Outcome.FINE, 4200 + 500),  # 1 000 kg above 50 %
        (75499, "floor", Outcome.FINE, 4200 + 50 * 500),
        (75500, "floor", Outcome.FINE, 29700),  # 4 200 + 51 t × 500, just under the cap
        (76500, "floor", Outcome.FINE, 30000),  # 4 200 + 26 000 = 30 200 → capped
        (100000, "floor", Outcome.FINE, 30000),
    ],
)
def test_zhejiang_art53(excess_kg: int, part_tonne: str, outcome: Outcome, fine_yuan: int) -> None:
    proposal = _propose(_rule("CN-ZJ", part_tonne=part_tonne), excess_kg)
    assert proposal.outcome is outcome
    assert proposal.fine_yuan == fine_yuan
    assert proposal.basis.law_zh == "浙江省公路条例"


def test_zhejiang_fine_rounded_to_nothing_is_not_education() -> None:
    # 59 500 kg against 49 000: 21.4 % over, 700 kg in the 300/t band, 0 t under floor
    zero = _propose(_rule("CN-ZJ", part_tonne="floor"), 10500)
    assert zero.outcome is Outcome.FINE and zero.fine_yuan == 0
    assert not any("可以不予罚款" in n for n in zero.reviewer_notes_zh)
    assert any("计得罚款0元" in n and "法制审核" in n for n in zero.reviewer_notes_zh)
    under = _propose(_rule("CN-ZJ", part_tonne="floor"), 9799)  # under 20 %: education
    assert under.outcome is Outcome.EDUCATION
    assert any("可以不予罚款" in n for n in under.reviewer_notes_zh)
    assert not any("计得罚款0元" in n for n in under.reviewer_notes_zh)


def test_zhejiang_values_differ_from_national() -> None:
    excess = 15000
    assert _propose(_rule("CN", part_tonne="floor"), excess).fine_yuan == 7500
    assert _propose(_rule("CN-ZJ", part_tonne="floor"), excess).fine_yuan == 1500


def _two_version_set() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(
        resources.files("zhichao.evidence").joinpath("rules", "cn.json").read_text("utf-8")
    )
    v1 = raw["versions"][0]
    v2 = copy.deepcopy(v1)
    v1["effective_to"] = "2024-01-01T00:00:00+08:00"
    v2["version"] = "TEST-2024"
    v2["effective_from"] = "2024-01-01T00:00:00+08:00"
    v2["penalty"]["rate_yuan_per_tonne"] = 600
    raw["versions"] = [v2, v1]
    return raw


@pytest.mark.parametrize(
    ("moment", "version", "fine_yuan"),
    [
        (datetime(2023, 12, 31, 15, 59, 59, 999999, tzinfo=UTC), "CN-62-2016", 1000),
        (datetime(2023, 12, 31, 16, 0, 0, tzinfo=UTC), "TEST-2024", 1200),
        (datetime(2025, 1, 1, tzinfo=UTC), "TEST-2024", 1200),
    ],
)
def test_rule_in_force_at_violation_time(moment: datetime, version: str, fine_yuan: int) -> None:
    rule = parse_rule_set(_two_version_set()).in_force(moment)
    assert rule.version == version
    assert _propose(rule, 2000).fine_yuan == fine_yuan


def test_no_rule_before_first_version() -> None:
    with pytest.raises(RuleError, match="no rule"):
        load_rule_set("CN").in_force(datetime(2010, 1, 1, tzinfo=UTC))


def test_overlapping_versions_are_refused() -> None:
    raw = _two_version_set()
    raw["versions"][1]["effective_to"] = "2024-01-02T00:00:00+08:00"
    with pytest.raises(RuleError, match="overlap"):
        parse_rule_set(raw)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(format="x"), "not a zhichao.rules/1"),
        (lambda r: r["versions"][0].pop("penalty"), "penalty"),
        (lambda r: r["versions"][0]["penalty"].update(part_tonne="round"), "part_tonne"),
        (lambda r: r["versions"][0].update(effective_from="yesterday"), "effective_from"),
        (lambda r: r["versions"][0].update(hearing_threshold_yuan="10k"), "hearing"),
        (lambda r: r["versions"][0]["penalty"].pop("part_tonne_source"), "part_tonne_source"),
        (lambda r: r["versions"][0].pop("effective_from_source"), "effective_from_source"),
        (lambda r: r["versions"][0].pop("hearing_threshold_source"), "hearing_threshold_source"),
        (lambda r: r["versions"][0].update(statement_days=0), "statement_days"),
        (lambda r: r["versions"][0].update(pending_legal_review=[{"parameter": "x"}]),
         r"pending_legal_review\[0\]"),
    ],
)
def test_malformed_rules_name_the_problem(mutate: Any, message: str) -> None:
    raw = _two_version_set()
    mutate(raw)
    with pytest.raises(RuleError, match=message):
        parse_rule_set(raw, "test.json")


def test_unknown_jurisdiction() -> None:
    with pytest.raises(RuleError, match="no rule set"):
        load_rule_set("XX")


def test_hearing_threshold_is_a_proposal() -> None:
    rule = _rule("CN")
    assert _propose(rule, 20000).hearing_right is None  # not configured: reviewer decides
    assert any("听证" in n for n in _propose(rule, 20000).reviewer_notes_zh)
    raw = _two_version_set()
    raw["versions"] = [raw["versions"][1]]
    raw["versions"][0]["effective_to"] = None
    raw["versions"][0]["hearing_threshold_yuan"] = 10000
    rule = parse_rule_set(raw).in_force(T2025)
    assert _propose(rule, 20000).hearing_right is True
    assert _propose(rule, 19999).hearing_right is False
    assert _propose(rule, 500).hearing_right is False  # a warning has no hearing


@pytest.mark.parametrize(
    ("prior", "expected"),
    [(None, "未知"), (0, "首次违法"), (2, None), (3, "超过3次")],
)
def test_repeat_and_first_violation_are_notes(prior: int | None, expected: str | None) -> None:
    proposal = _propose(_rule("CN"), 5000, prior=prior)
    assert proposal.fine_yuan == 2500  # never changed by the history
    notes = "".join(proposal.reviewer_notes_zh)
    if expected is None:
        assert "首次" not in notes and "超过3次" not in notes
    else:
        assert expected in notes
    assert proposal.to_json()["is_decision"] is False


def _sources(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if "law_zh" in node:
            found.append((path, node))
        for key, value in node.items():
            found += _sources(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _sources(value, f"{path}[{i}]")
    return found


@pytest.mark.parametrize("jurisdiction", ["cn", "cn-zj"])
def test_every_parameter_carries_a_labelled_source(jurisdiction: str) -> None:
    raw = json.loads(resources.files("zhichao.evidence").joinpath(
        "rules", f"{jurisdiction}.json").read_text(encoding="utf-8"))
    version = raw["versions"][-1]
    sources = dict(_sources(version))
    for key in (".limits.source", ".allowance.source", ".penalty.source", ".penalty.cap_source",
                ".penalty.part_tonne_source", ".effective_from_source",
                ".hearing_threshold_source", ".hearing_source", ".hearing_request_source",
                ".statement_days_source", ".repeat_violation.source",
                ".first_violation.source"):
        assert key in sources, key
    for path, source in sources.items():
        assert source["status"] in ("✅P", "✅S", "🟡", "❌"), path
        assert source["article_zh"], path
    # What law.md marks unconfirmed is marked unconfirmed here.
    assert sources[".penalty.part_tonne_source"]["status"] == "❌"
    assert sources[".hearing_threshold_source"]["status"] == "❌"
    # 行政处罚法 第四十条、第四十一条第二款 (primary text): no penalty inside the device's error
    assert sources[".allowance.source"]["status"] == "✅P"
    assert version["allowance"]["method"] == "device_mpe"
    # 浙江省公路条例 第六十一条: in force from 2020-09-01 (primary); 62号令's date is not checked
    assert version["effective_from_confirmed"] is (jurisdiction == "cn-zj")
    assert version["hearing_threshold_yuan"] is None
    assert version["hearing_request_days"] == 5  # 行政处罚法 Art. 64(1): 告知后五日内


@pytest.mark.parametrize(("excess_kg", "listed"), [
    (5000, {"effective_from", "penalty.part_tonne", "hearing_threshold_yuan",
            "statement_days"}),
    (800, {"effective_from", "statement_days"}),  # a warning, no fine
    (0, set()),  # no violation: nothing to propose
])
def test_unconfirmed_parameters_are_listed_to_the_reviewer(excess_kg: int, listed: set[str]
                                                           ) -> None:
    proposal = _propose(_rule("CN"), excess_kg)
    assert {p.parameter for p in proposal.pending_legal_review} == listed
    notes = "".join(proposal.reviewer_notes_zh)
    assert notes.count("【待法制审核确认】") == len(listed)
    data = proposal.to_json()["pending_legal_review"]
    assert all(item["source"]["law_zh"] and item["note_zh"] for item in data)
    if "penalty.part_tonne" in listed:
        step = next(s for s in proposal.steps if s.label_zh.startswith("计罚吨数"))
        assert step.source.status == "❌"  # the counted tonnes cite the unconfirmed choice


def test_zhejiang_lists_precedence_and_statement_days() -> None:
    rule = _rule("CN-ZJ")
    assert rule.statement_days == 15
    assert rule.statement_days_source.article_zh.startswith("第四十条")
    pending = {p.parameter: p for p in rule.pending_legal_review()}
    assert "precedence" in pending and "62号令" in pending["precedence"].note_zh
    proposal = _propose(rule, 30000)  # 61 % over: both bands
    per_band = [s for s in proposal.steps if "计罚吨数" in s.label_zh]
    assert len(per_band) == 2 and all(s.source.status == "❌" for s in per_band)


def test_confirmed_parameters_are_not_listed() -> None:
    raw = _two_version_set()
    raw["versions"] = [raw["versions"][1]]
    v = raw["versions"][0]
    v["effective_to"] = None
    v["effective_from_confirmed"] = True
    v["effective_from_source"]["status"] = "✅P"
    v["penalty"]["part_tonne_source"]["status"] = "✅P"
    v["hearing_threshold_yuan"] = 10000
    v["hearing_threshold_source"]["status"] = "✅P"
    v["statement_days"] = 10
    v["statement_days_source"]["status"] = "✅P"
    v["allowance"]["source"]["status"] = "✅P"
    rule = parse_rule_set(raw).in_force(T2025)
    assert rule.pending_legal_review() == ()
    assert "【待法制审核确认】" not in "".join(_propose(rule, 5000).reviewer_notes_zh)
