"""Merkle log, RFC 8785, RFC 3161 with a local openssl TSA, the PDF as pixels, the CLI."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.evidence.conftest import Env, case_dict
from zhichao.cli import main
from zhichao.evidence.canonical import canonicalize
from zhichao.evidence.errors import CanonicalisationError, LogError
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.merkle import (
    MerkleLog,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from zhichao.evidence.package import seal_package
from zhichao.evidence.tsa import OpensslTsa
from zhichao.evidence.verify import Result, verify_package

CT_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
             bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]


def test_rfc6962_vector_and_proofs(tmp_path: Path) -> None:
    with MerkleLog(tmp_path / "l", origin="t", create=True, fsync=False) as log:
        for e in CT_LEAVES:
            log.append(e)
        assert log.root().hex() == (
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
        for _ in range(600):  # crosses the 2**8 cache level
            log.append(random.randbytes(8))
        leaves = [log.leaf(i) for i in range(log.size)]
        rng = random.Random(1)
        for _ in range(100):
            n = rng.randint(1, log.size)
            i = rng.randrange(n)
            m = rng.randint(0, n)
            assert log.root(n) == root_from_leaf_hashes(leaves[:n])
            p = log.inclusion_proof(i, n)
            assert verify_inclusion(i, n, p.leaf_hash, list(p.hashes), log.root(n))
            assert not verify_inclusion(i, n, leaf_hash(b"x"), list(p.hashes), log.root(n))
            assert verify_consistency(m, n, log.root(m), log.root(n),
                                      log.consistency_proof(m, n))
        assert log.audit() == []


def test_log_damage_is_named(tmp_path: Path) -> None:
    with MerkleLog(tmp_path / "l", origin="t", create=True, fsync=False) as log:
        log.append(b"a")
        log.append(b"b")
    with (tmp_path / "l/leaves.bin").open("ab") as f:
        f.write(b"xx")
    with pytest.raises(LogError, match="leaves.bin"):
        MerkleLog(tmp_path / "l")
    with pytest.raises(LogError, match="not a zhichao log"):
        MerkleLog(tmp_path / "nothing")


def test_single_writer(tmp_path: Path) -> None:
    with MerkleLog(tmp_path / "l", origin="t", create=True) as log:
        with pytest.raises(LogError, match="lock"):
            MerkleLog(tmp_path / "l")
        log.append(b"x")


@pytest.mark.parametrize(("value", "expected"), [
    ({"b": 1, "a": [True, None, "é\n"]}, b'{"a":[true,null,"\xc3\xa9\\n"],"b":1}'),
    ({"\u20ac": 1, "\r": 2, "1": 3}, '{"\\r":2,"1":3,"\u20ac":1}'.encode()),
    ([1e21, 1e-7, 0.1, -0.0, 100.0, 333333333.3333333],
     b"[1e+21,1e-7,0.1,0,100,333333333.3333333]"),
])
def test_rfc8785(value: object, expected: bytes) -> None:
    assert canonicalize(value) == expected


@pytest.mark.parametrize("bad", [float("nan"), 2**60, {1: 2}, b"x"])
def test_rfc8785_refuses(bad: object) -> None:
    with pytest.raises(CanonicalisationError):
        canonicalize({"k": bad})


@pytest.fixture
def local_tsa(tmp_path: Path) -> OpensslTsa:
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not found: cannot run a local RFC 3161 TSA")
    d = tmp_path / "tsa"
    d.mkdir()
    (d / "tsa.cnf").write_text(
        "[ tsa ]\ndefault_tsa = t\n[ t ]\ndir = .\nserial = ./serial\n"
        "signer_cert = ./tsa.crt\nsigner_key = ./tsa.key\nsigner_digest = sha256\n"
        "default_policy = 1.2.3.4.1\ndigests = sha256\naccuracy = secs:1\nordering = yes\n"
        "tsa_name = no\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n"
        "[ v3_tsa ]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
        "extendedKeyUsage = critical,timeStamping\n")
    (d / "serial").write_text("01\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=Test TSA Root", "-days", "30",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
        "tsa.key", "-out", "tsa.csr", "-subj", "/CN=Test TSA")
    run("x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "tsa.crt", "-days", "30", "-extfile", "tsa.cnf",
        "-extensions", "v3_tsa")
    return OpensslTsa(d / "tsa.cnf")


def test_rfc3161_timestamp_on_checkpoint(env: Env, good_case: tuple[CaseInputs, Path],
                                         local_tsa: OpensslTsa) -> None:
    case, base = good_case
    pkg = env.root / "ts"
    seal_package(case, pkg, station=env.station, log=env.log, base_dir=base, tsa=local_tsa)
    key = env.station.key.public_key()
    ca = local_tsa.config.parent / "ca.crt"
    from cryptography import x509
    roots = x509.load_pem_x509_certificates(ca.read_bytes())
    report = verify_package(pkg, key=key, tsa_roots=roots)
    assert report.ok and "timestamp" in report.codes(Result.PASS), report.text()
    # openssl itself agrees (what docs/verify.md tells a court to run).
    out = subprocess.run(["openssl", "ts", "-verify", "-data", str(pkg / "seal/checkpoint.txt"),
                          "-in", str(pkg / "seal/checkpoint.tsr"), "-CAfile", str(ca),
                          "-untrusted", str(local_tsa.config.parent / "tsa.crt")],
                         capture_output=True, text=True, check=False)
    assert "Verification: OK" in out.stdout
    data = bytearray((pkg / "seal/checkpoint.tsr").read_bytes())
    data[-5] ^= 0xFF
    (pkg / "seal/checkpoint.tsr").write_bytes(bytes(data))
    assert "timestamp" in verify_package(pkg, key=key, tsa_roots=roots).codes()


def test_pdf_renders_chinese_photos_and_plots(env: Env, good_case: tuple[CaseInputs, Path]
                                               ) -> None:
    pdfium = pytest.importorskip("pypdfium2")
    case, base = good_case
    pkg = env.root / "doc"
    seal_package(case, pkg, station=env.station, log=env.log, base_dir=base)
    sheet = pdfium.PdfDocument(str(pkg / "derived/evidence_sheet.pdf"))
    text = "".join(sheet[i].get_textpage().get_text_range() for i in range(len(sheet)))
    for needle in ("超限运输车辆非现场检测取证单", "浙J12345", "ZJJL-2025-0456", "第五十三条",
                   "第1轴", "称重波形", "2025年06月01日"):
        assert needle in text, needle
    # Photos page: the four synthetic photos are large coloured areas.
    photos = sheet[1].render(scale=0.5).to_pil().convert("RGB")
    colours = {photos.getpixel((x, y)) for x in range(0, photos.width, 7)
               for y in range(0, photos.height, 7)}
    assert any(r > 120 and g < 80 and b < 80 for r, g, b in colours)  # red front photo
    assert any(b > 120 and r < 80 and g < 80 for r, g, b in colours)  # blue rear photo
    # Plots page: blue axle bars and coloured waveform strokes.
    plots = sheet[2].render(scale=1).to_pil().convert("RGB")
    blue = sum(1 for x in range(0, plots.width, 3) for y in range(0, plots.height // 2, 3)
               if plots.getpixel((x, y)) == (74, 122, 176))
    assert blue > 500
    # Chinese glyphs really drawn: the title area is not blank.
    title = sheet[0].render(scale=1).to_pil().convert("L").crop((150, 30, 450, 75))
    assert sum(1 for p in title.tobytes() if p < 128) > 200
    notice = pdfium.PdfDocument(str(pkg / "derived/notice.pdf"))
    ntext = notice[0].get_textpage().get_text_range()
    assert "违法行为通知书" in ntext and "陈述" in ntext and "听证" in ntext and "600" in ntext
    html = (pkg / "derived/evidence_sheet.html").read_text(encoding="utf-8")
    assert "data:image/jpeg;base64," in html and "<svg" in html and 'lang="zh-CN"' in html


def test_cli_keygen_seal_verify_render(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    base = tmp_path / "in"
    base.mkdir()
    (base / "case.json").write_text(json.dumps(case_dict(base), ensure_ascii=False))
    assert main(["keygen", str(tmp_path / "keys/station")]) == 0
    assert main(["seal", str(base / "case.json"), "--out", str(tmp_path / "pkg"), "--key",
                 str(tmp_path / "keys/station.key"), "--station", "S001",
                 "--log", str(tmp_path / "log")]) == 0
    pub = str(tmp_path / "keys/station.pub")
    assert main(["verify", str(tmp_path / "pkg"), "--key", pub,
                 "--log", str(tmp_path / "log")]) == 0
    out = capsys.readouterr().out
    assert "全部检查通过" in out and "all checks passed" in out
    assert main(["log-audit", str(tmp_path / "log"), "--key", pub,
                 "--key-name", "zhichao-station-S001"]) == 0
    assert main(["render", str(tmp_path / "pkg"), "--out", str(tmp_path / "docs")]) == 0
    assert (tmp_path / "docs/notice.pdf").stat().st_size > 1000
    (tmp_path / "pkg/original/image-front.jpg").write_bytes(b"replaced")
    assert main(["verify", str(tmp_path / "pkg"), "--key", pub]) == 1
    out = capsys.readouterr().out
    assert "original/image-front.jpg" in out and "失败" in out
    assert main(["verify", str(tmp_path / "pkg"), "--key", str(tmp_path / "nope.pub")]) == 2
    (tmp_path / "bad.json").write_text("{")
    assert main(["seal", str(tmp_path / "bad.json"), "--out", str(tmp_path / "p2"), "--key",
                 str(tmp_path / "keys/station.key"), "--station", "S001",
                 "--log", str(tmp_path / "log")]) == 2


def test_pdf_as_image_with_pdftoppm(tmp_path: Path, sealed_template: Path) -> None:
    """The 取证单 as poppler draws it (what docs/verify.md readers use): Chinese text,
    photos and plots are visible pixels."""
    from PIL import Image

    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed")
    prefix = tmp_path / "page"
    subprocess.run(["pdftoppm", "-r", "60", "-png", str(sealed_template /
                                                        "derived/evidence_sheet.pdf"),
                    str(prefix)], check=True, capture_output=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3
    first = Image.open(pages[0]).convert("L")
    # Title line (centred hanzi): dark pixels in the top band, none in the blank margin.
    title = first.crop((first.width // 5, 15, first.width * 4 // 5, 45))
    assert sum(1 for p in title.tobytes() if p < 128) > 150
    assert all(p > 200 for p in first.crop((0, 0, first.width, 8)).tobytes())
    photos = Image.open(pages[1]).convert("RGB")
    colours = {photos.getpixel((x, y)) for x in range(0, photos.width, 5)
               for y in range(0, photos.height, 5)}
    assert any(r > 120 and g < 80 and b < 80 for r, g, b in colours)  # red front photo
    assert any(g > 90 and r < 80 and b < 80 for r, g, b in colours)  # green side photo
    plots = Image.open(pages[2]).convert("RGB")
    bars = sum(1 for x in range(0, plots.width, 2) for y in range(0, plots.height // 2, 2)
               if abs(plots.getpixel((x, y))[0] - 74) < 12 and
               abs(plots.getpixel((x, y))[2] - 176) < 12)
    assert bars > 100  # the blue axle-load bars
