"""The static re-weighing's supplementary package: sealed, logged, verified, tamper-evident,
and checked against the original package it names."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.evidence.conftest import Env, case_dict
from tests.evidence.test_reweigh_rule import reading
from zhichao.evidence.errors import PackageError
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.package import seal_package
from zhichao.evidence.report import Result
from zhichao.evidence.reweigh import (
    OriginalRef,
    seal_reweigh,
    vehicle_record_sha256,
    verify_reweigh,
)
from zhichao.evidence.static_reading import StaticReading
from zhichao.evidence.verify import verify_package


def _sealed(env: Env, name: str = "pkg") -> tuple[CaseInputs, Path, OriginalRef]:
    base = env.root / f"in-{name}"
    base.mkdir()
    case = CaseInputs.from_json(case_dict(base))
    res = seal_package(case, env.root / name, station=env.station, log=env.log, base_dir=base,
                       renderer=lambda *_: {})
    ref = OriginalRef("S001-2-1000", vehicle_record_sha256(case.vehicle.raw), res.package_id,
                      res.manifest_sha256)
    return case, res.directory, ref


def _supplement(env: Env, case: CaseInputs, ref: OriginalRef, weight_kg: float = 46060
                ) -> Path:
    static = StaticReading.from_json(reading(weight_kg))
    res = seal_reweigh(dataclasses.replace(case, static_reweigh=static), ref,
                       env.root / "reweigh", station=env.station, log=env.log)
    assert res.log_index == 1
    return res.directory


def test_supplement_verifies_and_names_its_original(env: Env) -> None:
    case, original, ref = _sealed(env)
    sup = _supplement(env, case, ref)
    key = env.station.key.public_key()
    report = verify_package(sup, key=key, log_dir=env.log.directory)
    assert report.ok, report.text()
    assert "reweigh.reading" in report.codes(Result.PASS)
    both = verify_reweigh(sup, original, key=key)
    assert both.ok, both.text()
    manifest = json.loads((sup / "manifest.json").read_bytes())
    assert manifest["format"] == "zhichao.reweigh/1"
    named = manifest["case"]["original"]
    assert named["manifest_sha256"] == hashlib.sha256(
        (original / "manifest.json").read_bytes()).hexdigest()
    elig = manifest["case"]["decision"]["eligibility"]
    assert elig["status"] == "UNUSABLE"  # WIM 62 t, static 46 060 kg: not over
    assert elig["assessment"]["gross_kg"] == "46060"
    assert elig["assessment"]["wim_gross_kg"] == "62000"
    assert (original / "manifest.json").exists()  # the case package is untouched
    assert verify_package(original, key=key).ok


def test_tampered_supplement_fails(env: Env) -> None:
    case, _original, ref = _sealed(env)
    sup = _supplement(env, case, ref)
    key = env.station.key.public_key()
    bad = env.root / "bad"
    shutil.copytree(sup, bad)
    path = bad / "original" / "static-reading.json"
    path.write_bytes(path.read_bytes().replace(b'"46060"', b'"46000"'))
    assert "file.hash" in verify_package(bad, key=key).codes()
    bad2 = env.root / "bad2"
    shutil.copytree(sup, bad2)
    m = bad2 / "manifest.json"
    m.write_bytes(m.read_bytes().replace(b'"46060"', b'"46000"', 1))
    codes = verify_package(bad2, key=key).codes()
    assert {"signature.manifest", "reweigh.reading"} & codes


def test_supplement_against_another_original_fails(env: Env) -> None:
    case, _original, ref = _sealed(env, "pkg")
    sup = _supplement(env, case, ref)
    _case2, other, _ = _sealed(env, "other")
    report = verify_reweigh(sup, other, key=env.station.key.public_key())
    assert "reweigh.original" in report.codes()


@pytest.mark.parametrize("flag", ["unstable", "overload", "net"])
def test_a_flagged_reading_is_never_sealed(env: Env, flag: str) -> None:
    case, _original, ref = _sealed(env)
    static = StaticReading.from_json(reading(46060, flags=[flag]))
    with pytest.raises(PackageError, match="仪表"):
        seal_reweigh(dataclasses.replace(case, static_reweigh=static), ref,
                     env.root / "rw", station=env.station, log=env.log)
    assert not (env.root / "rw").exists()


def test_zhichao_verify_with_original(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    from zhichao.cli import main
    from zhichao.evidence.signing import public_pem

    case, original, ref = _sealed(env)
    sup = _supplement(env, case, ref)
    _case2, other, _ = _sealed(env, "other")
    key = env.root / "station.pub"
    key.write_bytes(public_pem(env.station.key.public_key()))
    assert main(["verify", str(sup), "--key", str(key), "--original", str(original)]) == 0
    assert "reweigh.original" in capsys.readouterr().out
    assert main(["verify", str(sup), "--key", str(key), "--original", str(other)]) == 1
    assert "复检包所指原始证据包与所给证据包不一致" in capsys.readouterr().out


def test_a_case_sealed_with_its_static_reading_carries_it(env: Env) -> None:
    """``zhichao seal`` on the case file ``zhichao evaluate`` takes: the decision uses the
    static weight, so the reading is in the signed manifest too."""
    base = env.root / "in"
    base.mkdir()
    case = CaseInputs.from_json(case_dict(base, static_reweigh=reading(61800)))
    res = seal_package(case, env.root / "pkg", station=env.station, log=env.log,
                       base_dir=base, renderer=lambda *_: {})
    facts = json.loads((res.directory / "manifest.json").read_bytes())["case"]
    assert facts["static_reweigh"]["weight_kg"] == "61800"
    assert facts["eligibility"]["assessment"]["gross_kg"] == "61800"
    assert facts["vehicle"]["gross_weight_kg"] == 62000.0  # the WIM weight stays
    assert verify_package(res.directory, key=env.station.key.public_key()).ok
    from zhichao.evidence.notice_text import notice_paragraphs

    text = "".join(notice_paragraphs({"package_id": res.package_id, "case": facts}))
    assert "经检测设备动态检测，车货总质量为62000" in text
    assert "复检，车货总质量为61800千克" in text and "ZJJL-S-2025-01" in text


def test_documents_of_a_reweighed_case_name_both_weights_in_covered_characters(
        env: Env) -> None:
    from zhichao.evidence.documents import uncovered_characters

    base = env.root / "in"
    base.mkdir()
    case = CaseInputs.from_json(case_dict(base, static_reweigh=reading(61800)))
    res = seal_package(case, env.root / "pkg", station=env.station, log=env.log,
                       base_dir=base)
    sheet = (res.directory / "derived" / "evidence_sheet.html").read_text(encoding="utf-8")
    assert "静态复检总质量（证据重量）" in sheet and "62000" in sheet
    facts = json.loads((res.directory / "manifest.json").read_bytes())["case"]
    legal = facts["eligibility"]["assessment"]
    texts = [legal["tolerance_basis_zh"], *legal["unconfirmed_zh"]]
    assert uncovered_characters(texts) == [], texts


def _text_of_pdf(data: bytes) -> str:
    pdfium = pytest.importorskip("pypdfium2")
    pdf = pdfium.PdfDocument(data)
    return "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))


def test_a_supplement_carries_its_reweigh_record(env: Env) -> None:
    """The 复检记录 (HTML and PDF): listed and hashed like any member, made from the
    manifest alone, in zh-CN with 北京时间 times, both weights, the certificate, the limit
    with its article, the tolerance and the decision — never an internal identifier."""
    from zhichao.evidence.documents import REWEIGH_FILES, render_reweigh, uncovered_characters

    case, _original, ref = _sealed(env)
    sup = _supplement(env, case, ref, weight_kg=61800)
    manifest = json.loads((sup / "manifest.json").read_bytes())
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(REWEIGH_FILES) <= set(listed)
    for path in REWEIGH_FILES:
        entry = listed[path]
        data = (sup / path).read_bytes()
        assert entry["kind"] == "derived" and entry["sha256"] == hashlib.sha256(
            data).hexdigest()
        assert entry["derived_from"] == ["manifest.case", "original/static-reading.json"]
        assert f"{entry['sha256']}  {path}" in (sup / "SHA256SUMS").read_text()
    html = (sup / "derived" / "reweigh_record.html").read_text(encoding="utf-8")
    pdf = (sup / "derived" / "reweigh_record.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    facts = manifest["case"]
    assert manifest["case"]["site"]["name_zh"]  # the site is in the supplement's facts
    for text in (html, _text_of_pdf(pdf).replace("\n", "")):
        for expected in ("超限运输车辆静态复检记录", "（北京时间）", "61800 kg", "62000 kg",
                         "ZJJL-S-2025-01", "执法员 张三", facts["site"]["name_zh"],
                         "证据重量", "静态复检重量", "仪表稳定位", "本文书为证据包派生文件",
                         "超限运输车辆行驶公路管理规定"):
            assert expected in text, expected
        for ident in ("overloaded", "within_limit", "ENFORCEABLE", "MANUAL_REVIEW",
                      "UNUSABLE", "truck_", "static_wim"):
            assert ident not in text, ident
    # the passage at 2025-06-01T02:30Z (the evidence tests' case) is 10:30 北京时间
    assert "2025年06月01日 10:" in html
    # the documents are made from the manifest alone: re-made, the same bytes (HTML)
    doc = {"package_id": manifest["package_id"], "case": facts}
    assert render_reweigh(doc)["derived/reweigh_record.html"] == html.encode()
    assert uncovered_characters([html]) == []
    key = env.station.key.public_key()
    report = verify_package(sup, key=key, log_dir=env.log.directory)
    assert report.ok, report.text()
    assert {"derived/reweigh_record.pdf", "derived/reweigh_record.html"} <= {
        c.message_en.split()[2] for c in report.checks if c.code == "file.hash"}


def test_a_tampered_or_added_record_fails_verify(env: Env) -> None:
    case, _original, ref = _sealed(env)
    sup = _supplement(env, case, ref)
    key = env.station.key.public_key()
    bad = env.root / "bad"
    shutil.copytree(sup, bad)
    path = bad / "derived" / "reweigh_record.html"
    path.write_bytes(path.read_bytes().replace(b"46060", b"45060"))
    assert "file.hash" in verify_package(bad, key=key).codes()
    extra = env.root / "extra"
    shutil.copytree(sup, extra)
    (extra / "derived" / "reweigh_record2.pdf").write_bytes(b"%PDF-1.4")
    assert "file.unlisted" in verify_package(extra, key=key).codes()
    gone = env.root / "gone"
    shutil.copytree(sup, gone)
    (gone / "derived" / "reweigh_record.pdf").unlink()
    assert "file.missing" in verify_package(gone, key=key).codes()


def test_a_supplement_without_documents_still_verifies(env: Env) -> None:
    """A supplement sealed before the 复检记录 existed has only its reading file; it
    verifies, with its original, and ``zhichao render`` makes its record afterwards."""
    from zhichao.cli import main

    case, original, ref = _sealed(env)
    static = StaticReading.from_json(reading(46060))
    sup = seal_reweigh(dataclasses.replace(case, static_reweigh=static), ref,
                       env.root / "old", station=env.station, log=env.log,
                       renderer=lambda *_: {}).directory
    manifest = json.loads((sup / "manifest.json").read_bytes())
    assert [f["path"] for f in manifest["files"]] == ["original/static-reading.json"]
    assert not (sup / "derived").exists()
    key = env.station.key.public_key()
    assert verify_reweigh(sup, original, key=key, log_dir=env.log.directory).ok
    out = env.root / "rendered"
    assert main(["render", str(sup), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["reweigh_record.html",
                                                     "reweigh_record.pdf"]
    assert "46060 kg" in (out / "reweigh_record.html").read_text(encoding="utf-8")


def test_the_record_of_an_older_manifest_and_certificate_dates(env: Env) -> None:
    """A manifest without the site and class facts (sealed before the 复检记录) still
    renders, saying what it lacks; a certificate ending at 北京时间 midnight is valid
    through the day before."""
    from zhichao.evidence.documents import reweigh_rows

    case, _original, ref = _sealed(env)
    sup = _supplement(env, case, ref)
    manifest = json.loads((sup / "manifest.json").read_bytes())
    facts = dict(manifest["case"])
    facts.pop("site")
    facts["passage"] = {k: v for k, v in facts["passage"].items()
                        if k not in ("axle_count", "vehicle_class_zh")}
    facts["reading"] = dict(facts["reading"], certificate=dict(
        facts["reading"]["certificate"], valid_from="2025-01-09T16:00:00Z",
        valid_until="2026-01-09T16:00:00Z"))
    rows = dict(reweigh_rows({"package_id": manifest["package_id"], "case": facts}))
    assert rows["监测点"] == f"监测点编号 {facts['passage']['site_id']}（名称未载入本补充包）"
    assert rows["车型"] == "六轴及六轴以上汽车列车"  # the gate's class, in Chinese
    assert ("有效期 2025年01月10日（北京时间） 至 2026年01月09日（北京时间，含当日）"
            in rows["静态衡器检定证书"])
