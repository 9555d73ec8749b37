"""No accuracy class from a verification that cannot show one (review findings 7 and 8):
too few passes per truck, runs the device got wrong dropped silently, or the runs the
profile was fitted on."""

from __future__ import annotations

from tests.calibration.conftest import Session
from zhichao.calibration.accuracy import (
    DEFAULT_TABLES,
    AccuracyConfig,
    PassResult,
    assess,
    verify_accuracy,
)
from zhichao.weighing.calibration_profile import parse_profile


def _p(name: str, error_pct: float | None, truck: str = "2轴 16000 kg", valid: bool = True,
       reason: str = "", speed_kmh: float = 50.0, sha: str = "") -> PassResult:
    gross = None if error_pct is None else 16000.0 * (1 + error_pct / 100)
    return PassResult(name, sha or f"sha-{name}", truck, speed_kmh, 20.0, [], valid, reason,
                      16000.0, [6400.0, 9600.0], gross,
                      [] if gross is None else [gross * 0.4, gross * 0.6], [[1], [2]])


def _two_trucks(n: int, error_pct: float = 0.05) -> list[PassResult]:
    return [_p(f"{t}{i}", error_pct if i % 2 else -error_pct, truck=t, speed_kmh=30 + i)
            for t in ("2轴 16000 kg", "2轴 18000 kg") for i in range(n)]


def test_enough_valid_passes_give_a_class() -> None:
    r = assess(_two_trucks(10), None, AccuracyConfig())
    assert not r.refusals and r.rejected_fraction == 0.0
    assert r.gross_class["initial"].achieved == "0.2" and not r.gross_class["initial"].refused
    assert r.speed_ranges["initial"]["0.2"] is not None


def test_one_pass_gives_no_class_and_no_speed_range() -> None:
    """The reviewer's acc.py: one pass within 0.06 % was class 0.2."""
    r = assess([_p("p1", 0.06)], None, AccuracyConfig())
    assert [x["code"] for x in r.refusals] == ["too_few_passes"]
    for phase in ("initial", "in_service"):
        assert r.gross_class[phase].achieved is None and r.gross_class[phase].refused
        assert r.axle_class[phase].achieved is None and r.axle_class[phase].refused
        assert all(v is None for v in r.speed_ranges[phase].values())
    assert r.cost323["overall"] is None
    # nine passes of one truck among enough of another: still refused, naming the truck
    r = assess(_two_trucks(10)[:19], None, AccuracyConfig())
    assert r.refusals and r.refusals[0]["detail"] == "2轴 18000 kg: 9"


def test_runs_the_device_got_wrong_count_against_the_class() -> None:
    """The reviewer's acc2.py: 1 valid of 10 runs, the rest dropped, gave class 0.2."""
    runs = _two_trucks(10)
    runs += [_p(f"nw{i}", None, valid=False, reason="not weighed") for i in range(3)]
    runs += [_p(f"ax{i}", 9.4, valid=False, reason="axle count 3 ≠ reference 2")
             for i in range(3)]
    runs += [_p(f"fl{i}", 11.3, valid=False, reason="flagged: rows_disagree")
             for i in range(3)]
    r = assess(runs, None, AccuracyConfig())
    assert r.rejected_fraction == 9 / 29
    assert [x["code"] for x in r.refusals] == ["too_many_rejected"]
    assert r.gross_class["initial"].achieved is None and r.gross_class["initial"].refused
    assert r.to_json()["rejected_fraction"] == 9 / 29
    # one rejected run in 21 is within the allowed 5 %
    ok = assess(_two_trucks(10) + [_p("nw", None, valid=False, reason="not weighed")], None,
                AccuracyConfig())
    assert not ok.refusals and ok.gross_class["initial"].achieved == "0.2"
    assert assess(runs, None, AccuracyConfig(max_rejected_fraction=0.5)).refusals == []


def test_the_runs_a_profile_was_fitted_on_are_not_a_verification() -> None:
    runs = _two_trucks(10)
    fitted = [{"recording": "x", "sha256": "sha-2轴 16000 kg3"}]
    profile = parse_profile({"format": "zhichao.calibration/1", "profile_id": "CAL-X",
                             "data": {"passes": fitted}})
    r = assess(runs, profile, AccuracyConfig())
    assert [x["code"] for x in r.refusals] == ["in_sample"]
    assert r.in_sample_recordings == ["2轴 16000 kg3"]
    assert r.gross_class["initial"].refused and r.gross_class["initial"].achieved is None


def test_verifying_on_the_calibration_runs_is_refused(session4: Session) -> None:
    """The reviewer's sess.py, on the session's own fit runs (a few of them)."""
    profile = parse_profile(session4.result.profile)
    r = verify_accuracy(session4.cal[:6], session4.cal_ref, profile)
    codes = [x["code"] for x in r.refusals]
    assert "in_sample" in codes and len(r.in_sample_recordings) == 6
    assert all(r.gross_class[ph].achieved is None for ph in ("initial", "in_service"))
    assert DEFAULT_TABLES["oiml_r134"]["gross"]  # the tables themselves are untouched
