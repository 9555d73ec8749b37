"""A station's severity overrides may never lower a reason the law makes fatal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.evidence.conftest import case_dict
from zhichao.evidence.eligibility import (
    LAW_FATAL_CODES,
    GateConfig,
    Severity,
    Status,
    evaluate,
)
from zhichao.evidence.errors import EvidenceError, RuleError
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.rules import load_rule_set


@pytest.mark.parametrize("code", ["certificate_invalid", "certificate_unavailable",
                                  "site_not_published", "device_technical_review"])
@pytest.mark.parametrize("lower", [Severity.INFO, Severity.MANUAL_REVIEW])
def test_lowering_a_law_fatal_reason_is_refused(code: str, lower: Severity) -> None:
    assert code in LAW_FATAL_CODES
    with pytest.raises(RuleError, match="cannot lower a reason the law makes fatal"):
        GateConfig(severity={code: lower})


def test_lowering_by_plain_string_is_refused_too() -> None:
    with pytest.raises(EvidenceError, match="site_not_published"):
        GateConfig(severity={"site_not_published": "info"})  # type: ignore[dict-item]


def test_other_overrides_still_work_and_are_typed() -> None:
    cfg = GateConfig(severity={"plate_low_confidence": "info",  # type: ignore[dict-item]
                               "certificate_invalid": Severity.UNUSABLE,
                               "legal_values_unconfirmed": Severity.MANUAL_REVIEW})
    assert cfg.severity["plate_low_confidence"] is Severity.INFO
    assert cfg.to_json()["severity_overrides"]["legal_values_unconfirmed"] == "manual_review"


def test_unknown_code_or_severity_is_refused() -> None:
    with pytest.raises(RuleError, match="unknown reason code"):
        GateConfig(severity={"certificate_invaild": Severity.INFO})
    with pytest.raises(RuleError, match="is not one of"):
        GateConfig(severity={"plate_low_confidence": "ignore"})  # type: ignore[dict-item]


def test_expired_certificate_stays_unusable(tmp_path: Path) -> None:
    d = case_dict(tmp_path)
    d["device"]["certificate_valid_to"] = "2025-05-01T00:00:00+08:00"
    result = evaluate(CaseInputs.from_json(d), load_rule_set("CN-ZJ"),
                      GateConfig(severity={"plate_low_confidence": Severity.INFO}))
    assert result.status is Status.UNUSABLE
    assert "certificate_invalid" in {r.code for r in result.reasons}
