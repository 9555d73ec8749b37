"""Property-based tampering of real sealed packages and their zips (issue #15, item 6).

Two packages are sealed once per session (one with its documents, one without) and zipped
stored and deflated; Hypothesis mutates the zips in memory: byte flips, insertions,
deletions, truncation, prepended and appended bytes, duplicated entries, renamed entries
and a reordered central directory. Every mutant must be refused by ``verify`` (through the
strict reader, the same path the center takes) or be provably harmless: what ``verify``
accepts is byte for byte the original content, as the strict reader and as Python's
``zipfile`` read it (:func:`zhichao.testing.zipforge.judge`). ``EXAMPLES`` per property,
2 250 cases in all; ``benchmarks/evidence_fuzz.py`` runs more and counts the outcomes.
"""

from __future__ import annotations

import shutil
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.evidence.conftest import case_dict
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station, seal_package
from zhichao.testing import zipforge
from zhichao.testing.zipforge import Base

EXAMPLES = 250
PROPERTIES = 9  # the @given tests below: EXAMPLES * PROPERTIES cases
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NO_DOCS: Any = lambda *_: {}  # noqa: E731


@pytest.fixture(scope="session")
def bases(tmp_path_factory: pytest.TempPathFactory, station: Station,
          sealed_template: Path) -> list[Base]:
    root = tmp_path_factory.mktemp("fuzz")
    base_dir = root / "in"
    base_dir.mkdir()
    case = CaseInputs.from_json(case_dict(base_dir))
    with MerkleLog(root / "log", origin=station.origin, create=True, fsync=False) as log:
        seal_package(case, root / "plain", station=station, log=log, base_dir=base_dir,
                     renderer=NO_DOCS)
    shutil.rmtree(base_dir)
    return zipforge.fuzz_bases(sealed_template, root / "plain")


@pytest.fixture(scope="session")
def key(station: Station) -> Any:
    return station.key.public_key()


def test_the_genuine_zips_verify(bases: list[Base], key: Any) -> None:
    for base in bases:
        assert zipforge.judge(base.data, base, key) == "accepted", base.label


_base = st.integers(min_value=0, max_value=4)
_position = st.integers(min_value=0, max_value=1 << 30)
_chunk = st.binary(min_size=1, max_size=64)


@FUZZ
@given(which=_base, at=_position, xor=st.integers(min_value=1, max_value=255))
def test_byte_flips(bases: list[Base], key: Any, which: int, at: int, xor: int) -> None:
    base = bases[which]
    zipforge.judge(zipforge.flip(base.data, at, xor), base, key)


@FUZZ
@given(which=_base, at=_position, chunk=_chunk)
def test_insertions(bases: list[Base], key: Any, which: int, at: int, chunk: bytes) -> None:
    base = bases[which]
    assert zipforge.judge(zipforge.insert(base.data, at, chunk), base, key) != "accepted"


@FUZZ
@given(which=_base, at=_position, count=st.integers(min_value=1, max_value=64))
def test_deletions(bases: list[Base], key: Any, which: int, at: int, count: int) -> None:
    base = bases[which]
    assert zipforge.judge(zipforge.delete(base.data, at, count), base, key) != "accepted"


@FUZZ
@given(which=_base, keep=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_truncation(bases: list[Base], key: Any, which: int, keep: float) -> None:
    base = bases[which]
    assert zipforge.judge(base.data[:int(len(base.data) * keep)], base, key) != "accepted"


@FUZZ
@given(which=_base, chunk=_chunk, before=st.booleans())
def test_prepended_and_appended_bytes(bases: list[Base], key: Any, which: int, chunk: bytes,
                                      before: bool) -> None:
    base = bases[which]
    mutant = chunk + base.data if before else base.data + chunk
    assert zipforge.judge(mutant, base, key) == "package.extra_data"


@FUZZ
@given(which=_base, index=st.integers(min_value=0, max_value=99), planted=st.binary(max_size=64),
       planted_first=st.booleans())
def test_duplicated_entries(bases: list[Base], key: Any, which: int, index: int,
                            planted: bytes, planted_first: bool) -> None:
    base = bases[which]
    mutant = zipforge.duplicate(base, index, planted, planted_first)
    assert zipforge.judge(mutant, base, key) == "package.names"


def _look_alikes(name: str) -> st.SearchStrategy[str]:
    head, _, tail = name.rpartition("/")
    return st.sampled_from([
        name.upper(), name.swapcase(), unicodedata.normalize("NFD", name + "\u00e9"),
        "../" + name, "/" + name, name.replace("/", "\\"), name + "\x00", "./" + name,
        name + " ", name + "/", "C:" + name, f"{head}/../{tail}" if head else "x/../" + name,
        f"{head}//{tail}", "original/extra.jpg", "pkg/" + name, name[:-1]])


@FUZZ
@given(which=_base, index=st.integers(min_value=0, max_value=99), data=st.data())
def test_renamed_entries(bases: list[Base], key: Any, which: int, index: int,
                         data: st.DataObject) -> None:
    base = bases[which]
    old = base.members[index % len(base.members)][0]
    new = data.draw(st.one_of(_look_alikes(old), st.text(min_size=1, max_size=40)))
    verdict = zipforge.judge(zipforge.rename(base, index, new), base, key)
    assert verdict != "accepted" or new == old, (old, new)


@FUZZ
@given(which=_base, data=st.data())
def test_reordered_central_directory(bases: list[Base], key: Any, which: int,
                                     data: st.DataObject) -> None:
    base = bases[which]
    order = data.draw(st.permutations(range(len(base.members))))
    verdict = zipforge.judge(zipforge.reorder_central(base, order), base, key)
    assert verdict == ("accepted" if order == sorted(order) else "package.structure")


@FUZZ
@given(which=_base, index=st.integers(min_value=0, max_value=99), at=_position,
       xor=st.integers(min_value=1, max_value=255))
def test_flips_in_headers(bases: list[Base], key: Any, which: int, index: int, at: int,
                          xor: int) -> None:
    """Flips aimed at the 30 + 46 header bytes of one entry and at the end record, where a
    random flip rarely lands."""
    base = bases[which]
    entries = zipforge.central_entries(base.data)
    entry = entries[index % len(entries)]
    spots = [entry.local_offset + i for i in range(30)] + [
        entry.header_offset + i for i in range(46)] + [len(base.data) - 22 + i
                                                     for i in range(22)]
    zipforge.judge(zipforge.flip(base.data, spots[at % len(spots)], xor), base, key)


def test_the_suite_runs_at_least_2000_cases() -> None:
    given_tests = [v for k, v in globals().items() if k.startswith("test_") and hasattr(
        v, "hypothesis")]
    assert len(given_tests) == PROPERTIES and EXAMPLES * PROPERTIES >= 2000
