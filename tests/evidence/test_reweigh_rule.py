"""Static re-weighing (复检): the static reading is the evidence weight, with the static
scale's MPE as tolerance; both weights stay visible; unusable readings never count."""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.evidence.conftest import case_dict, vehicle_dict
from zhichao.evidence.eligibility import Status, evaluate
from zhichao.evidence.evaluate_cli import _evaluate
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.rules import load_rule_set
from zhichao.evidence.static_reading import static_mpe_kg

RULES = load_rule_set("CN-ZJ")
CERT = {"scale_id": "SCALE-1", "certificate_number": "ZJJL-S-2025-01",
        "issuer_zh": "浙江省计量科学研究院", "accuracy_class": "III", "division_kg": 20,
        "max_capacity_kg": 100000, "valid_from": "2025-01-01T00:00:00Z",
        "valid_until": "2026-01-01T00:00:00Z"}


def reading(weight_kg: float, **kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"reading_id": "R1", "weight_kg": weight_kg,
                         "reading_utc": "2025-06-01T02:40:00Z", "flags": [],
                         "stable_by": "device", "raw_hex": "02", "indicator": "toledo",
                         "certificate": dict(CERT), "officer": "执法员 张三"}
    r.update(kw)
    return r


def _case(tmp_path: Path, static: dict[str, Any] | None, **vehicle: Any) -> CaseInputs:
    return CaseInputs.from_json(case_dict(tmp_path, vehicle=vehicle_dict(**vehicle),
                                          static_reweigh=static))


def codes(result: Any) -> set[str]:
    return {r.code for r in result.reasons}


@pytest.mark.parametrize(("load", "mpe"), [(0, 20), (10000, 20), (10020, 40), (40000, 40),
                                           (40020, 60), (200000, 60), (200020, None)])
def test_class_iii_in_service_mpe_bands(load: int, mpe: int | None) -> None:
    # e = 20 kg: 500 e = 10 t, 2000 e = 40 t, 10000 e = 200 t; in service twice 0.5/1/1.5 e
    got = static_mpe_kg(Decimal(load), Decimal(20), "III")
    assert got == (None if mpe is None else Decimal(mpe))


def test_static_within_limit_is_not_enforceable(tmp_path: Path) -> None:
    """WIM says 62 t (overloaded); the scale says 46 060 kg: 46 060 − 60 is not over even
    the stricter 46 t limit (a vehicle exactly at the limit is not over it)."""
    result = evaluate(_case(tmp_path, reading(46060)), RULES)
    a = result.assessment
    assert a is not None and a.verdict == "within_limit"
    assert a.gross_kg == Decimal(46060) and a.tolerance_kg == Decimal(60)
    assert "静态衡器III级" in a.tolerance_basis_zh
    assert result.status is Status.UNUSABLE and "no_violation" in codes(result)
    assert result.penalty is None
    shown = a.to_json()
    assert shown["weight_source"] == "static" and shown["wim_gross_kg"] == "62000"


def test_static_only_overload_goes_to_a_reviewer_with_both_weights(tmp_path: Path) -> None:
    result = evaluate(_case(tmp_path, reading(52000), gross_weight_kg=48500.0,
                            verdict="within_limit", overloaded=False, excess_kg=None,
                            excess_after_allowance_kg=None, allowance_kg=485.0), RULES)
    a = result.assessment
    assert a is not None and a.verdict == "overloaded"
    assert a.excess_kg == Decimal(52000 - 60 - 49000)
    assert result.status is Status.MANUAL_REVIEW
    assert {"static_only_overload", "static_wim_disagree"} <= codes(result)
    assert "no_violation" not in codes(result)
    assert result.penalty is not None  # proposed from the static weight, for the reviewer
    assert a.to_json()["wim_gross_kg"] == "48500"


def test_static_confirming_wim_is_enforceable_on_the_static_weight(tmp_path: Path) -> None:
    wim_only = evaluate(_case(tmp_path, None), RULES)
    result = evaluate(_case(tmp_path, reading(61800)), RULES)
    assert result.status is Status.ENFORCEABLE, result.reasons
    a = result.assessment
    assert a is not None and a.excess_kg == Decimal(61800 - 60 - 49000)
    assert wim_only.assessment is not None and wim_only.assessment.gross_kg == Decimal(62000)
    assert "legal_values_unconfirmed" in codes(result)  # the MPE table is 🟡


def test_abnormal_driving_no_longer_blocks_once_reweighed(tmp_path: Path) -> None:
    plain = evaluate(_case(tmp_path, None, flags=["straddling"]), RULES)
    assert plain.status is Status.MANUAL_REVIEW
    result = evaluate(_case(tmp_path, reading(61800), flags=["straddling"]), RULES)
    assert "abnormal_driving_reweighed" in codes(result)
    assert result.status is Status.ENFORCEABLE, result.reasons


@pytest.mark.parametrize(("static", "code"), [
    (reading(61800, flags=["unstable"]), "static_reading_unusable"),
    (reading(61800, flags=["overload"]), "static_reading_unusable"),
    (reading(61800, stable_by=""), "static_reading_unusable"),
    (reading(61800, certificate={**CERT, "valid_until": "2025-06-01T00:00:00Z"}),
     "static_certificate_invalid"),
    (reading(61800, certificate={**CERT, "accuracy_class": "II"}), "static_certificate_invalid"),
    (reading(61800, reading_utc="2025-06-01T01:00:00Z"), "static_before_passage"),
])
def test_unusable_static_readings(tmp_path: Path, static: dict[str, Any], code: str) -> None:
    result = evaluate(_case(tmp_path, static), RULES)
    assert code in codes(result)
    assert result.status is Status.UNUSABLE


def test_evaluate_cli_takes_the_static_reading(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    raw = case_dict(tmp_path, static_reweigh=reading(46060))
    path = tmp_path / "case.json"
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    rc = _evaluate(argparse.Namespace(case=str(path), json=True, rules_dir=None))
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    elig = out["eligibility"]
    direct = evaluate(CaseInputs.from_json(raw), RULES)
    assert elig["status"] == str(direct.status) == "UNUSABLE"
    assert elig["assessment"]["gross_kg"] == "46060"
    assert elig["assessment"]["wim_gross_kg"] == "62000"
    assert out["penalty"] is None
