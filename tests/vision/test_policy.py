"""The confirmation rule: an unsure read needs a second view or a second frame that agrees."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from zhichao.vision.image import load_image
from zhichao.vision.policy import PlatePolicy, ReviewCode
from zhichao.vision.reader import PlateReader
from zhichao.vision.vehicle import VehicleFrame, assess_read, decide_from_reads

T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)
POLICY = PlatePolicy()


def test_unsure_read_confirmed_by_its_second_view(reader: PlateReader, dev_dir: Path) -> None:
    read = reader.read_path(dev_dir / "toll_0020.jpg")[0]
    assert read.text == "浙A197EZ"
    assert POLICY.min_confidence <= read.confidence < POLICY.confident_alone
    assert read.confirmed_by_second_view
    assert assess_read(read, POLICY) == ()
    alone = replace(read, second_view_text=None, second_view_confidence=None)
    assert [r.code for r in assess_read(alone, POLICY)] == [ReviewCode.UNCONFIRMED]


def test_second_view_that_disagrees_sends_to_review(reader: PlateReader, dev_dir: Path) -> None:
    read = reader.read_path(dev_dir / "toll_0078.jpg")[0]
    assert read.text == "浙E3679Z"
    assert not read.confirmed_by_second_view
    assert [r.code for r in assess_read(read, POLICY)] == [ReviewCode.UNCONFIRMED]


def test_sure_reads_skip_the_second_view(reader: PlateReader, dev_dir: Path) -> None:
    read = reader.read_path(dev_dir / "toll_0004.jpg")[0]
    assert read.confidence >= POLICY.confident_alone
    assert read.second_view_text is None
    assert assess_read(read, POLICY) == ()


def test_a_second_frame_confirms_an_unsure_read(reader: PlateReader, dev_dir: Path) -> None:
    image = load_image(dev_dir / "toll_0020.jpg")
    read = replace(reader.read_image(image)[0], second_view_text=None)
    first = VehicleFrame(image, "front", T0)
    second = VehicleFrame(image, "front", T0 + timedelta(milliseconds=200))
    single = decide_from_reads([(first, [read])])
    assert single.review_codes == (ReviewCode.UNCONFIRMED.value,)
    both = decide_from_reads([(first, [read]), (second, [read])])
    assert both.accepted and both.plate == "浙A197EZ"


def test_very_low_confidence_is_never_confirmed(reader: PlateReader, dev_dir: Path) -> None:
    read = reader.read_path(dev_dir / "toll_0200.jpg")[0]
    assert read.confidence < POLICY.min_confidence
    assert [r.code for r in assess_read(read, POLICY)] == [ReviewCode.LOW_CONFIDENCE]
