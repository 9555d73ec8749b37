"""Sealing overload cases into evidence packages, safely.

* The station key (Ed25519) is created on first start (``0600``, written through a
  temporary file, fsync, rename) and kept; the station log is a
  :class:`zhichao.evidence.merkle.MerkleLog` in ``<evidence>/log``.
* Before each seal the evidence folder is probed (exists, is writable — a real write, since
  permission bits do not stop root —, has ``evidence.min_free_mb`` free). If not, sealing
  stops with an alarm (``sealing_stopped``) and the case waits in ``pending_seal``; no
  package is started.
* :func:`zhichao.evidence.package.seal_package` writes ``<id>.partial`` and renames it; the
  station then fsyncs every file and the folder before the case is marked sealed, so a
  package marked sealed is durable. A SIGKILL between any two writes leaves a station that
  starts: the log repairs a torn tail on open; a leftover ``*.partial`` folder of a pending
  case that verifies in full (killed just before its rename) is completed, any other is
  deleted; a package folder whose case is not marked sealed is verified: kept if it
  verifies, moved to ``quarantine/`` if not; every case still pending is sealed again.
  ``log_entries_without_package`` counts the log's entries that neither a case package nor
  a static re-weighing's supplement (``<evidence>/reweigh/``) accounts for.
* The originals are checked before a case is sealed (:meth:`Sealer.usable_images`,
  :func:`zhichao.station.clips.clip_unusable`): an image must be a whole JPEG (non-empty,
  SOI at its start, EOI at its end), a clip a whole MP4 (its top-level boxes fill the file,
  ``ftyp``, ``moov`` and ``mdat`` among them). A power cut can leave a renamed file whose
  contents never reached the disk (a zero-length or zero-filled file under its final
  name); such a file, or one that is gone, is treated as missing — the image is left out
  (the gate then says ``image_missing`` for a required role), the clip is recorded as
  missing with why — never sealed and signed as an original. Each one is logged and
  recorded on the case (``cases.unusable_files``, :class:`UnusableFile`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from zhichao.common import format_utc, fsync_dir, write_atomic
from zhichao.evidence.errors import KeyFileError
from zhichao.evidence.inputs import (
    CaseInputs,
    ClockSync,
    DeviceStatus,
    ImageRef,
    PlateResult,
    SiteInfo,
    VehicleRecord,
    VideoClipRef,
)
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import SealResult, Station, seal_package
from zhichao.evidence.signing import generate_key, load_private_key, private_pem, public_pem
from zhichao.evidence.verify import verify_package
from zhichao.station.clips import ClipRequest, clip_unusable, resolve_clips
from zhichao.station.config import StationConfig, parse_utc_key
from zhichao.station.device import device_from_config
from zhichao.station.errors import SealingStoppedError, StationError

LOG = logging.getLogger("zhichao.station")
#: how long :meth:`Sealer.close` waits for an append under way (a PDF being rendered)
CLOSE_WAIT_S = 300.0
DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EIO}


#: how a clip left out as unusable is named in the manifest's ``videos_missing``
CLIP_UNUSABLE_PREFIX = "the clip file is unusable: "
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"


@dataclass(frozen=True)
class UnusableFile:
    """An original of a case that was not sealed: gone, empty or cut short (a power cut
    after its rename, before its contents reached the disk). Recorded on the case."""

    kind: Literal["image", "clip"]
    source: str  # the image's role, or the clip's camera id
    path: str
    reason: str  # English

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "source": self.source, "path": self.path,
                "reason": self.reason}


def jpeg_unusable(path: Path) -> str | None:
    """Why the file at ``path`` is no whole JPEG (English), or None: gone, empty, not
    starting with SOI or not ending with EOI (a file cut short, or zeros where its tail
    should be). Other read errors (EIO) are raised: the disk, not the file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            size = os.fstat(fh.fileno()).st_size
            if size >= 4:
                fh.seek(size - 2)
            tail = fh.read(2)
    except FileNotFoundError:
        return "the file is missing"
    except IsADirectoryError:
        return "not a file"
    if size == 0:
        return "the file is empty (0 bytes)"
    if head != JPEG_SOI:
        return f"not a JPEG: no start-of-image marker ({size} bytes)"
    if size < 4 or tail != JPEG_EOI:
        return f"a truncated JPEG: no end-of-image marker at its end ({size} bytes)"
    return None


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` and ``root``'s parent."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))
    fsync_dir(root.parent)


def public_key_path(private_path: Path) -> Path:
    """Where the station's public key is published: beside the private key, ``.pub``."""
    return private_path.with_suffix(".pub")


def load_or_create_key(path: Path) -> tuple[Any, bool]:
    """The station's private key; created (and kept) on first start. (key, created).
    Its public key is written beside it (:func:`public_key_path`, readable by all) for
    ``zhichao verify --key`` and for registering the station at a center."""
    created = not path.exists()
    try:
        if created:
            key = generate_key()
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, private_pem(key), mode=0o600)
        else:  # an unreadable key is never replaced: its packages must stay verifiable
            key = load_private_key(path)
        pub = public_pem(key.public_key())
        pub_path = public_key_path(path)
        if not pub_path.exists() or pub_path.read_bytes() != pub:
            write_atomic(pub_path, pub)
    except KeyFileError as exc:
        raise StationError(
            f"the station signing key cannot be used: {exc}. It is never replaced "
            f"automatically (the packages signed with it must stay verifiable): restore "
            f"{path.name} from a backup, or set station.key_file to the station's key") from None
    except OSError as exc:
        raise StationError(f"{path}: cannot read or write the station signing key: "
                              f"{exc}") from exc
    return key, created


@dataclass(frozen=True)
class CaseMaterial:
    """What the pipeline knows about one overload passage, for its package."""

    passage_key: str
    record: dict[str, Any]
    plate: PlateResult | None
    images: tuple[ImageRef, ...]
    clocks: ClockSync | None
    waveform_path: str | None
    device: dict[str, Any] | None = None  # DeviceStatus JSON at the passage (drift state)
    clips: tuple[dict[str, Any], ...] = ()  # ClipRequest JSON (zhichao.station.clips)


class Sealer:
    def __init__(self, cfg: StationConfig) -> None:
        self.cfg = cfg
        self.dir = cfg.data_path(cfg.evidence.dir)
        self.packages = self.dir / "packages"
        self.quarantine = self.dir / "quarantine"
        key_path = (cfg.path(cfg.station.key_file) if cfg.station.key_file
                    else cfg.data_dir / "station-key.pem")
        self.key, self.key_created = load_or_create_key(key_path)
        self.key_path = key_path
        key_name = cfg.station.key_name or f"zhichao-station-{cfg.station.station_id}"
        self.station = Station(cfg.station.station_id, key_name, self.key)
        self.packages.mkdir(parents=True, exist_ok=True)
        # a log torn by a kill mid-append is repaired on open (back to the last complete
        # entry; the repair is recorded in <log>/repairs.jsonl)
        self.log = MerkleLog(self.dir / "log", origin=self.station.origin, create=True)
        # held while appending: the sealer thread and the re-weighing stage share the log
        self.log_lock = threading.Lock()
        self.closed = False  # set by close(): no append after it
        repair = getattr(self.log, "repair", None)
        self.log_repair: int = int(repair["dropped_entries"]) if repair else 0
        # the record from station.toml, for cases committed before the device status was
        # part of their material; new cases carry their own (with the drift state)
        self.device = DeviceStatus.from_json(device_from_config(cfg).to_evidence_json())
        s = cfg.site
        self.site = SiteInfo(
            site_id=s.site_id, name_zh=s.name_zh, road_zh=s.road_zh or None,
            stake_zh=s.stake_zh or None, jurisdiction=s.jurisdiction,
            published_utc=parse_utc_key("site.published_utc", s.published_utc)
            if s.published_utc else None,
            announcement_zh=s.announcement_zh or None, authority_zh=s.authority_zh or None,
            handling_place_zh=s.handling_place_zh or None)

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Close the evidence log, never under an append: it takes :attr:`log_lock` (held
        by the case sealer and the re-weighing thread while they seal; neither calls this
        under it). An append still under way after ``wait_s`` leaves the log open (logged;
        the process is ending: a torn entry is repaired at the next open, and the next
        start adopts or seals the folder again); a later append finds it closed."""
        if not self.log_lock.acquire(timeout=wait_s):
            LOG.error("evidence log not closed: an append is still under way",
                      extra={"fields": {"waited_s": wait_s}})
            self.closed = True  # nothing new starts on it
            return
        try:
            if not self.closed:
                self.closed = True
                self.log.close()
        finally:
            self.log_lock.release()

    def check_open(self) -> None:
        """Raise :class:`SealingStoppedError` when the log is closed (call under
        :attr:`log_lock`)."""
        if self.closed:
            raise SealingStoppedError(f"{self.dir / 'log'}: the evidence log is closed")

    @property
    def reweigh_dir(self) -> Path:
        """Where the static re-weighings' supplements are sealed (``reweigh_stage``)."""
        return self.dir / "reweigh"

    def supplements_sealed(self) -> int:
        """The supplements (``zhichao.reweigh/1``) in :attr:`reweigh_dir`: each was
        appended to the log once before its folder got its final name (a ``.partial``
        left by a kill is not one; one that fails to verify is quarantined by the
        re-weighing stage, and its entry is then without a package)."""
        if not self.reweigh_dir.is_dir():
            return 0
        return sum(1 for p in self.reweigh_dir.iterdir()
                   if p.is_dir() and not p.name.endswith(".partial"))

    def package_dir(self, passage_key: str) -> Path:
        return self.packages / passage_key

    def check_writable(self) -> str | None:
        """Why sealing cannot run now (English detail), or None."""
        if not self.packages.is_dir():
            return f"{self.packages} is missing or not a folder"
        try:
            st = os.statvfs(self.packages)
        except OSError as exc:
            return f"{self.packages}: {exc}"
        free_mb = st.f_bavail * st.f_frsize / 1e6
        if free_mb < self.cfg.evidence.min_free_mb:
            return (f"{self.packages}: {free_mb:.1f} MB free < evidence.min_free_mb "
                    f"{self.cfg.evidence.min_free_mb} MB")
        probe = self.packages / ".write-probe"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"x" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
            probe.unlink()
        except OSError as exc:
            return f"{self.packages}: not writable ({exc.strerror})"
        return None

    def usable_images(self, m: CaseMaterial, unusable: list[UnusableFile]
                      ) -> tuple[ImageRef, ...]:
        """``m``'s images that are whole JPEGs; each other one is logged and appended to
        ``unusable`` (it is sealed as missing, never as a corrupt original)."""
        out = []
        for img in m.images:
            why = jpeg_unusable(self.cfg.data_dir / img.path)
            if why is None:
                out.append(img)
                continue
            LOG.warning("case image unusable; sealed as missing", extra={"fields": {
                "passage": m.passage_key, "role": img.role, "path": img.path,
                "reason": why}})
            unusable.append(UnusableFile("image", img.role, img.path, why))
        return tuple(out)

    def usable_clips(self, m: CaseMaterial, unusable: list[UnusableFile]
                     ) -> tuple[VideoClipRef, ...]:
        """``m``'s clips (:func:`resolve_clips`); a clip file that is no whole MP4 becomes
        a missing clip with why, logged and appended to ``unusable``."""
        out = []
        for v in resolve_clips(tuple(ClipRequest.from_json(c) for c in m.clips)):
            why = None if v.path is None else clip_unusable(self.cfg.data_dir / v.path)
            if why is None:
                out.append(v)
                continue
            assert v.path is not None
            LOG.warning("case clip unusable; sealed as missing", extra={"fields": {
                "passage": m.passage_key, "camera": v.camera_id, "path": v.path,
                "reason": why}})
            unusable.append(UnusableFile("clip", v.camera_id, v.path, why))
            out.append(replace(v, path=None, first_frame_utc=None, last_frame_utc=None,
                               missing_reason=f"{CLIP_UNUSABLE_PREFIX}{why}"))
        return tuple(out)

    def seal(self, m: CaseMaterial, unusable: list[UnusableFile] | None = None
             ) -> SealResult:
        """Seal one case. Raises :class:`SealingStoppedError` when the disk refuses. The
        originals that were left out as unusable are appended to ``unusable``."""
        why = self.check_writable()
        if why is not None:
            raise SealingStoppedError(why)
        out = self.package_dir(m.passage_key)
        left_out: list[UnusableFile] = []
        renderer = None if self.cfg.evidence.render_documents else _no_documents
        try:
            images = self.usable_images(m, left_out)
            videos = self.usable_clips(m, left_out)
            case = CaseInputs(
                vehicle=VehicleRecord.from_json(m.record, f"passage {m.passage_key}"),
                device=(DeviceStatus.from_json(m.device, f"passage {m.passage_key}.device")
                        if m.device is not None else self.device),
                site=self.site, plate=m.plate, images=images,
                clocks=m.clocks, registration=None, prior_violations=None,
                waveform_path=m.waveform_path, videos=videos,
                station_id=self.cfg.station.station_id)
            with self.log_lock:
                self.check_open()
                result = seal_package(case, out, station=self.station, log=self.log,
                                      base_dir=self.cfg.data_dir, renderer=renderer)
            fsync_tree(out)
        except OSError as exc:
            shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
            if exc.errno in DISK_ERRNOS:
                raise SealingStoppedError(f"{out}: {exc.strerror}") from exc
            raise
        if unusable is not None:
            unusable.extend(left_out)
        return result

    def take_over(self, key: str) -> dict[str, Any] | None:
        """A pending case's final package folder, already there (a kill, or a failure after
        its rename): its manifest facts if it verifies against this station's key and log
        (it is the case's package), else None, the folder moved to the quarantine (the
        case is sealed again)."""
        out = self.package_dir(key)
        if not out.exists():
            return None
        report = verify_package(out, key=self.key.public_key(), log_dir=self.log.directory)
        if report.ok:
            manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
            inclusion = json.loads((out / "seal" / "inclusion.json").read_text())
            return {"package_id": manifest["package_id"],
                    "eligibility": manifest["case"]["eligibility"]["status"],
                    "reasons": [r["code"] for r in manifest["case"]["eligibility"]["reasons"]],
                    "log_index": int(inclusion["index"])}
        self.quarantine.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        out.rename(self.quarantine / f"{out.name}-{stamp}")
        return None

    def unusable_in_package(self, m: CaseMaterial) -> list[UnusableFile]:
        """The originals of ``m`` that its sealed package left out as unusable, read from
        the package's manifest: for a package adopted (:meth:`take_over`, :meth:`recover`)
        whose sealing run was killed before it recorded them. An image the manifest does
        not hold, with why (:func:`jpeg_unusable` now, or that it was left out); a clip the
        manifest names as unusable, with its reason."""
        manifest = json.loads((self.package_dir(m.passage_key) / "manifest.json")
                              .read_text(encoding="utf-8"))
        sealed = {(f.get("role"), f.get("source_name")) for f in manifest.get("files", [])
                  if isinstance(f, dict)}
        out: list[UnusableFile] = []
        for img in m.images:
            if (f"image_{img.role}", Path(img.path).name) in sealed:
                continue
            why = (jpeg_unusable(self.cfg.data_dir / img.path)
                   or "left out of its sealed package (found when the package was adopted)")
            out.append(UnusableFile("image", img.role, img.path, why))
        missing = {x.get("camera_id"): str(x.get("reason", ""))
                   for x in manifest.get("case", {}).get("videos_missing", [])
                   if isinstance(x, dict)}
        for raw in m.clips:
            req = ClipRequest.from_json(raw)
            reason = missing.get(req.camera_id, "")
            if reason.startswith(CLIP_UNUSABLE_PREFIX):
                out.append(UnusableFile("clip", req.camera_id, req.path,
                                        reason[len(CLIP_UNUSABLE_PREFIX):]))
        return out

    def recover(self, sealed_keys: set[str], pending_keys: list[str]) -> dict[str, Any]:
        """Start-up clean-up; returns packages found complete for pending cases
        ({passage key: manifest facts}) and counts."""
        removed_partial = completed_partial = 0
        pub = self.key.public_key()
        pending = set(pending_keys)
        for p in sorted(self.packages.glob("*.partial")):
            key = p.name[:-len(".partial")]
            final = self.package_dir(key)
            # killed after the whole package was written and logged, before its rename:
            # complete it (it verifies against this station's key and log) …
            if key in pending and not final.exists() and p.is_dir() and verify_package(
                    p, key=pub, log_dir=self.log.directory).ok:
                fsync_tree(p)
                p.rename(final)
                fsync_dir(self.packages)
                completed_partial += 1
                continue
            # … otherwise remove it: the case is sealed again
            shutil.rmtree(p, ignore_errors=True)
            removed_partial += 1
        complete: dict[str, dict[str, Any]] = {}
        quarantined = 0
        for key in pending_keys:
            if not self.package_dir(key).exists():
                continue
            facts = self.take_over(key)
            if facts is not None:
                complete[key] = facts
            else:
                quarantined += 1
        # the log holds the case packages and the re-weighings' supplements
        supplements = self.supplements_sealed()
        return {"complete": complete, "removed_partial": removed_partial,
                "completed_partial": completed_partial,
                "log_repaired": self.log_repair,
                "quarantined": quarantined, "supplements_sealed": supplements,
                "log_entries_without_package": max(0, self.log.size - len(sealed_keys)
                                                   - len(complete) - supplements)}


def _no_documents(_doc: dict[str, Any], _read: Any) -> dict[str, bytes]:
    return {}


def material_to_json(m: CaseMaterial) -> dict[str, Any]:
    return {
        "passage_key": m.passage_key, "record": m.record,
        "plate": None if m.plate is None else m.plate.to_json(),
        "images": [{"path": i.path, "role": i.role, "capture_utc": format_utc(i.capture_utc),
                    "camera_id": i.camera_id} for i in m.images],
        "clocks": None if m.clocks is None else m.clocks.to_json(),
        "waveform_path": m.waveform_path, "device": m.device, "clips": list(m.clips),
    }


def material_from_json(raw: dict[str, Any]) -> CaseMaterial:
    return CaseMaterial(
        passage_key=raw["passage_key"], record=raw["record"],
        plate=None if raw["plate"] is None else PlateResult.from_json(raw["plate"]),
        images=tuple(ImageRef.from_json(i) for i in raw["images"]),
        clocks=None if raw["clocks"] is None else ClockSync.from_json(raw["clocks"]),
        waveform_path=raw["waveform_path"], device=raw.get("device"),
        clips=tuple(raw.get("clips") or ()))
