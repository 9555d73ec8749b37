"""The notice and decision texts: what they say about the fine and its payment."""

from __future__ import annotations

import json
from pathlib import Path

from zhichao.evidence.notice_text import decision_paragraphs, notice_paragraphs


def _doc(sealed_template: Path) -> dict[str, object]:
    manifest = json.loads((sealed_template / "manifest.json").read_bytes())
    return {"package_id": manifest["package_id"], "case": manifest["case"]}


def test_decision_states_the_late_payment_cap(sealed_template: Path) -> None:
    # 行政处罚法 Art. 72: 3 % a day, the surcharge never more than the fine itself
    text = "".join(decision_paragraphs(
        _doc(sealed_template), outcome_zh="罚款", fine_yuan=500, reasons_zh="事实清楚",
        decided_utc="2026-12-01T02:00:00Z"))
    assert "罚款人民币500元" in text
    assert "每日按罚款数额的百分之三加处罚款，加处罚款的数额不得超出罚款的数额" in text


def test_a_fine_counted_to_nothing_says_so(sealed_template: Path) -> None:
    # 浙江省公路条例 Art. 53 just over 20 %: a fine, 0 yuan under the floor rounding
    text = "".join(decision_paragraphs(
        _doc(sealed_template), outcome_zh="罚款", fine_yuan=0, reasons_zh="事实清楚",
        decided_utc="2026-12-01T02:00:00Z"))
    assert "本机关决定：罚款（按计罚吨数取整规则计得0元，须经法制审核确认）" in text
    assert "百分之三" not in text  # nothing to pay
    warned = "".join(decision_paragraphs(
        _doc(sealed_template), outcome_zh="警告", fine_yuan=0, reasons_zh="事实清楚",
        decided_utc="2026-12-01T02:00:00Z"))
    assert "本机关决定：警告。" in warned


def test_notice_of_a_fine_counted_to_nothing(sealed_template: Path) -> None:
    doc = _doc(sealed_template)
    case = dict(doc["case"])  # type: ignore[call-overload]
    case["penalty"] = {**case["penalty"], "outcome_zh": "罚款", "fine_yuan": 0}
    text = "".join(notice_paragraphs({**doc, "case": case}))
    assert "计得0元" in text


def test_the_device_is_called_verified_only_within_jjg907(sealed_template: Path) -> None:
    doc = _doc(sealed_template)
    case = dict(doc["case"])  # type: ignore[call-overload]
    assert case["device"]["installation_type"] == "bending_plate"
    assert "经依法检定合格的检测设备检测" in "".join(notice_paragraphs(doc))
    for installation, expected in (
            ("in_pavement_strip", "经路面直埋式检测设备（计量证书ZJJL-2025-0456）检测"),
            (None, "经检测设备（计量证书ZJJL-2025-0456）检测")):
        case["device"] = {**case["device"], "installation_type": installation}
        text = "".join(notice_paragraphs({**doc, "case": case}))
        assert expected in text and "检定合格的检测设备" not in text
