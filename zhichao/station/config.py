"""``station.toml``: what one station is, validated at start-up.

Every section is a frozen dataclass; :func:`load_config` reads TOML with :mod:`tomllib`
and checks each key against its dataclass field (unknown keys, wrong types and bad values
are refused with the dotted key name and the problem). Without a file the embedded
defaults describe a complete simulated lane (``wim.url = "sim"``). The documented example
is ``station.example.toml`` next to this module (``docs/station.md`` explains each key).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_type_hints

from zhichao.evidence.errors import KeyFileError
from zhichao.evidence.signing import load_public_key
from zhichao.station.config_sections import (  # noqa: F401 - re-exported
    CameraSection,
    ClipSection,
    ClockSection,
    DeviceSection,
    DriftSection,
    EvidenceSection,
    HttpSection,
    LaneSection,
    LinkingSection,
    RetentionSection,
    SensorSection,
    SimulationSection,
    SiteSection,
    StaticScaleSection,
    StationSection,
    VisionSection,
    WimSection,
)
from zhichao.station.errors import StationConfigError
from zhichao.sync.wire import LANE_ID_MAX_CHARS, SITE_ID_MAX_CHARS
from zhichao.vision.runtime import INFERENCE_BACKENDS, INFERENCE_PRECISIONS

EXAMPLE_CONFIG = Path(__file__).with_name("station.example.toml")
CAMERA_ROLES = ("front", "side", "rear")
PLATE_ROLES = ("front", "rear")  # the roles whose frames show the plate (side: the axles)
# The simulated lane's lane regions ([left, top, right, bottom] of the frame), from where
# zhichao.station.scene draws the plate, with a margin of at least 0.06 of the frame:
# front (960 × 540): plate centre x = w/2 ± (0.15 w + 40 px) = 0.31 … 0.69 w; y = 0.68 …
#   0.8 h + half a plate height (27 … 38 px) = 0.73 … 0.87 h → [0.2, 0.6, 0.8, 0.95];
# rear (960 × 540): x = w/2 ± (0.1 w + 30 px) = 0.37 … 0.63 w; y = 0.62 … 0.74 h →
#   [0.25, 0.5, 0.75, 0.85]. The corners' perspective jitter (± 4 % of the plate, ≤ 10 px)
#   moves the centre by less than 0.01 of the frame.
SIM_FRONT_REGION = (0.2, 0.6, 0.8, 0.95)
SIM_REAR_REGION = (0.25, 0.5, 0.75, 0.85)
CAMERA_URL_SCHEMES = ("folder", "file", "rtsp", "rtsps", "usb", "sim", "http",
                      "https")  # zhichao.devices


@dataclass(frozen=True)
class StationConfig:
    station: StationSection = field(default_factory=StationSection)
    site: SiteSection = field(default_factory=SiteSection)
    lane: LaneSection = field(default_factory=LaneSection)
    wim: WimSection = field(default_factory=WimSection)
    device: DeviceSection = field(default_factory=DeviceSection)
    drift: DriftSection = field(default_factory=DriftSection)
    cameras: tuple[CameraSection, ...] = (
        CameraSection("CAM-FRONT-1", "front", "spool/front", 12.0,
                      lane_region=SIM_FRONT_REGION),
        CameraSection("CAM-SIDE-1", "side", "spool/side", 14.0),
        CameraSection("CAM-REAR-1", "rear", "spool/rear", 30.0, lane_region=SIM_REAR_REGION),
    )
    camera_clips: ClipSection = field(default_factory=ClipSection)  # [cameras] clip_*
    linking: LinkingSection = field(default_factory=LinkingSection)
    vision: VisionSection = field(default_factory=VisionSection)
    evidence: EvidenceSection = field(default_factory=EvidenceSection)
    http: HttpSection = field(default_factory=HttpSection)
    clock: ClockSection = field(default_factory=ClockSection)
    simulation: SimulationSection = field(default_factory=SimulationSection)
    static_scale: StaticScaleSection = field(default_factory=StaticScaleSection)
    retention: RetentionSection = field(default_factory=RetentionSection)
    base_dir: str = "."  # folder relative paths resolve against (the config file's)

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def data_dir(self) -> Path:
        return self.path(self.station.data_dir)

    def data_path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.data_dir / p

    def camera_spool(self, c: CameraSection) -> Path:
        """Where a camera's frames enter linking: its spool folder, or for a URL camera the
        folder its grabber writes into."""
        return self.data_path(c.spool_dir) if c.spool_dir else (
            self.data_dir / "cameras" / c.camera_id)

    @property
    def simulated(self) -> bool:
        return self.wim.url == "sim"


# ---------------------------------------------------------------------------- parsing
def _fail(key: str, problem: str) -> StationConfigError:
    return StationConfigError(f"station.toml: {key}: {problem}")


def _convert(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _fail(key, f"expected a table, got {type(value).__name__}")
        return _build(hint, value, key)  # type: ignore[arg-type]
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list):
            raise _fail(key, f"expected an array, got {type(value).__name__}")
        return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (types.UnionType, typing.Union):
        raise _fail(key, "internal: unions are not supported")
    if hint is bool:
        if not isinstance(value, bool):
            raise _fail(key, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(key, f"expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(key, f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _fail(key, f"expected a string, got {value!r}")
        return value
    raise _fail(key, f"internal: unsupported type {hint!r}")


# StationConfig fields whose TOML name differs: [[camera]] tables, [cameras] clip settings
TOML_NAMES = {"cameras": "camera", "camera_clips": "cameras"}


def _build(cls: type[Any], raw: dict[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else TOML_NAMES.get(key, key)
        if key not in names or key == "base_dir":
            known = ", ".join(sorted(n for n in names if n != "base_dir"))
            raise _fail(dotted, f"unknown key (known here: {known})")
        kwargs[key] = _convert(value, hints[key], dotted)
    return cls(**kwargs)


UNREGISTERED_DEVICE: dict[str, Any] = {
    "device_id": "WIM-UNREGISTERED", "installation_type": "other",
    "technical_review_approved": False,
    "technical_review_date": "", "legal_review_approved": False, "legal_review_date": "",
    "accuracy_class": "", "certificate_number": "", "certificate_issuer": "",
    "certificate_valid_from": "", "certificate_valid_to": "", "manufacturer": "",
    "model": ""}
"""``[device]`` keys a station with a real WIM device (``wim.url`` other than ``sim``) gets
where station.toml leaves them out: no certificate, no approvals, class unknown — the
evidence gate refuses its cases until they are given (the embedded values are the
simulated lane's: ``SIM-CERT-0001``, both reviews approved)."""


def parse_config(raw: dict[str, Any], base_dir: Path | str = ".") -> StationConfig:
    """Build and validate a configuration from parsed TOML (``camera`` is an array of
    tables, stored as ``cameras``)."""
    raw = dict(raw)
    if isinstance(raw.get("cameras"), dict):  # [cameras]: the clip settings of all cameras
        raw["camera_clips"] = raw.pop("cameras")
    if "camera" in raw:
        raw["cameras"] = raw.pop("camera")
    elif "cameras" in raw:
        raise _fail("cameras", "write cameras as [[camera]] tables")
    wim = raw.get("wim")
    if isinstance(wim, dict) and wim.get("url", "sim") != "sim":
        device = raw.get("device")
        if not (isinstance(device, dict) and device.get("status_file")):
            # the embedded device record is the simulated lane's: a real device that
            # station.toml does not describe has no certificate and no approvals
            raw["device"] = {**UNREGISTERED_DEVICE,
                             **(device if isinstance(device, dict) else {})}
    cfg: StationConfig = _build(StationConfig, raw, "")
    # absolute once, here: a relative base would follow the process's working folder
    cfg = dataclasses.replace(cfg, base_dir=str(Path(base_dir).resolve()))
    validate(cfg)
    return cfg


def load_config(path: Path | str | None) -> StationConfig:
    """Read and validate ``station.toml``; ``None`` gives the embedded defaults."""
    if path is None:  # relative defaults resolve against the working folder, made absolute
        cfg = StationConfig(base_dir=str(Path.cwd().resolve()))
        validate(cfg)
        return cfg
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise StationConfigError(f"{p}: cannot read the configuration: {exc}") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StationConfigError(f"{p}: not valid TOML: {exc}") from exc
    try:
        return parse_config(raw, p.resolve().parent)
    except StationConfigError as exc:
        raise StationConfigError(f"{p}: {exc}") from exc


def parse_utc_key(key: str, text: str) -> datetime:
    """An RFC 3339 time from the configuration (error names ``key``)."""
    return _utc(key, text)


def _utc(key: str, text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(key, f"{text!r} is not an RFC 3339 time (e.g. 2025-06-01T00:00:00Z)"
                    ) from None
    if t.tzinfo is None:
        raise _fail(key, f"{text!r} has no UTC offset; write it with Z")
    return t.astimezone(UTC)


def validate(cfg: StationConfig) -> None:
    """Check values (not only types); raises :class:`StationConfigError` naming the key.
    Sections are checked in file order (the first problem is the one reported)."""
    for check in (_check_station, _check_site_lane_wim, _check_device, _check_cameras,
                  _check_pipeline, _check_clock, _check_simulation, _check_retention):
        check(cfg)
    if cfg.static_scale.url or cfg.static_scale != StaticScaleSection():
        from zhichao.station.static_scale import check_config

        check_config(cfg)


def _need(cond: bool, key: str, problem: str) -> None:
    if not cond:
        raise _fail(key, problem)


def _check_station(cfg: StationConfig) -> None:
    """The station's identity, its center and upload."""
    s = cfg.station
    _need(bool(s.station_id.strip()), "station.station_id", "must not be empty")
    _need(all(c.isalnum() or c in "-_" for c in s.station_id), "station.station_id",
          "only letters, digits, '-' and '_' (it names package folders)")
    _need(s.center_url == "" or s.center_url.startswith(("http://", "https://")),
          "station.center_url", "must be empty or an http(s):// URL")
    if s.center_url:
        _need(bool(s.center_key_file), "station.center_key_file",
              "is required with station.center_url (the center's public key, PEM, to check "
              "its receipts)")
    else:
        _need(not s.center_key_file, "station.center_key_file",
              "is only used with station.center_url")
    if s.center_key_file:
        key_path = cfg.path(s.center_key_file)
        _need(key_path.is_file(), "station.center_key_file", f"{key_path} does not exist")
        try:
            load_public_key(key_path)
        except (KeyFileError, OSError) as exc:
            raise _fail("station.center_key_file",
                        f"{key_path} is not an Ed25519 public key in PEM ({exc})") from None
    _need(0.5 <= s.upload_max_delay_s <= 3600, "station.upload_max_delay_s",
          "must be within 0.5 … 3600 s")
    _need(0 < s.upload_timeout_s <= 600, "station.upload_timeout_s", "must be in (0, 600] s")
    _need(0 <= s.disk_reserve_mb <= 4096, "station.disk_reserve_mb", "must be in [0, 4096] MiB")


def _check_site_lane_wim(cfg: StationConfig) -> None:
    """Site, lane and the WIM stream's sensor geometry."""
    # the center refuses (permanently) every passage whose ids exceed its columns
    _need(bool(cfg.site.site_id), "site.site_id", "must not be empty")
    _need(len(cfg.site.site_id) <= SITE_ID_MAX_CHARS, "site.site_id",
          f"at most {SITE_ID_MAX_CHARS} characters (the center refuses every passage "
          f"record with a longer one), not {len(cfg.site.site_id)}")
    _need(bool(cfg.site.jurisdiction), "site.jurisdiction", "must not be empty (e.g. CN, CN-ZJ)")
    if cfg.site.published_utc:
        _utc("site.published_utc", cfg.site.published_utc)
    _need(bool(cfg.lane.lane_id), "lane.lane_id", "must not be empty")
    _need(len(cfg.lane.lane_id) <= LANE_ID_MAX_CHARS, "lane.lane_id",
          f"at most {LANE_ID_MAX_CHARS} characters (the center refuses every passage "
          f"record with a longer one), not {len(cfg.lane.lane_id)}")
    w = cfg.wim
    if w.url != "sim":
        wim_url_kind(w.url)
    _need(w.read_timeout_s > 0, "wim.read_timeout_s", "must be > 0")
    if w.calibration_profile:
        _need(cfg.path(w.calibration_profile).is_file(), "wim.calibration_profile",
              f"{cfg.path(w.calibration_profile)} does not exist")
    if w.scatter_file:
        _need(cfg.path(w.scatter_file).is_file(), "wim.scatter_file",
              f"{cfg.path(w.scatter_file)} does not exist")
    _need(w.pool_every_passages >= 1, "wim.pool_every_passages", "must be >= 1")
    _need(w.pool_window_days > 0, "wim.pool_window_days", "must be > 0")
    _need(w.pool_max_passages >= 30, "wim.pool_max_passages", "must be >= 30")
    sn = w.sensor
    _need(len(sn.rows_x_m) >= 2, "wim.sensor.rows_x_m", "at least two rows are needed")
    _need(sn.rows_x_m[0] == 0.0, "wim.sensor.rows_x_m", "row 1 is the origin: start with 0.0")
    _need(all(b > a for a, b in zip(sn.rows_x_m, sn.rows_x_m[1:], strict=False)),
          "wim.sensor.rows_x_m", "positions must increase downstream")
    _need(0 < sn.strip_width_m < 1, "wim.sensor.strip_width_m", "must be in (0, 1) m")
    _need(sn.sensitivity_per_n != 0, "wim.sensor.sensitivity_per_n", "must not be 0")
    _need(sn.full_scale > 0, "wim.sensor.full_scale", "must be > 0")
    _need(sn.sample_rate_hz > 0, "wim.sensor.sample_rate_hz", "must be > 0")
    _need(-50 <= sn.pavement_temperature_c <= 80, "wim.sensor.pavement_temperature_c",
          "must be within -50 … 80 °C")


def wim_url_kind(url: str) -> str:
    """``samples`` or ``records`` for ``wim.url`` (any WIM device of the devices stage's
    registry: ZSF/1 over TCP or serial, the Modbus sample ring, ZWR/1 lines, the Modbus
    record ring); the device is built, not connected, so every setting is checked."""
    from zhichao.devices.errors import DeviceError
    from zhichao.devices.registry import open_wim_device, wim_kind

    try:
        kind = wim_kind(url)
        open_wim_device(url).close()
    except DeviceError as exc:
        raise _fail("wim.url", f"{exc} (\"sim\" or a WIM device URL: docs/devices.md, URLs)"
                    ) from None
    return kind


def _check_camera_url(key: str, url: str) -> None:
    """A camera URL builds (not opens) its camera: its settings are checked now."""
    from zhichao.devices.errors import DeviceError
    from zhichao.devices.registry import open_device

    try:
        open_device("camera", url).close()
    except DeviceError as exc:
        raise _fail(key, f"{exc} (a camera URL: docs/devices.md, URLs)") from None


def _check_device(cfg: StationConfig) -> None:
    """The WIM device's legal status and the drift monitor."""
    d = cfg.device
    for key in ("certificate_valid_from", "certificate_valid_to"):
        if getattr(d, key):
            _utc(f"device.{key}", getattr(d, key))
    for key in ("technical_review_date", "legal_review_date"):
        value = getattr(d, key)
        if value:
            try:
                datetime.strptime(value, "%Y-%m-%d")
            except ValueError:
                raise _fail(f"device.{key}", f"{value!r} is not a YYYY-MM-DD date") from None
    if d.status_file:
        _device_file(cfg)
    else:
        from zhichao.calibration.legal import INSTALLATION_TYPES
        from zhichao.weighing.overload import ACCURACY_CLASSES, accuracy_class

        _need(not d.accuracy_class or accuracy_class(d.accuracy_class) is not None,
              "device.accuracy_class",
              f"{d.accuracy_class!r} is not one of {sorted(ACCURACY_CLASSES)} (or empty: "
              "unknown)")

        _need(d.installation_type in INSTALLATION_TYPES, "device.installation_type",
              f"must be one of {INSTALLATION_TYPES}")
    _need(30 <= cfg.drift.baseline_n <= 100_000, "drift.baseline_n", "must be 30 … 100000")


MAX_CAMERA_ID_CHARS = 64


def _check_cameras(cfg: StationConfig) -> None:
    """Cameras: ids, roles, spool or URL, lane regions."""
    ids = [c.camera_id for c in cfg.cameras]
    _need(len(set(ids)) == len(ids), "camera", f"camera ids must be unique, got {ids}")
    for i, c in enumerate(cfg.cameras):
        _need(c.role in CAMERA_ROLES, f"camera[{i}].role", f"must be one of {CAMERA_ROLES}")
        _need(bool(c.camera_id), f"camera[{i}].camera_id", "must not be empty")
        _need(len(c.camera_id) <= MAX_CAMERA_ID_CHARS and "/" not in c.camera_id,
              f"camera[{i}].camera_id", f"at most {MAX_CAMERA_ID_CHARS} characters, no '/' "
              "(it names a folder and goes into each plate read's evidence record)")
        _need(bool(c.spool_dir) != bool(c.url), f"camera[{i}]",
              "give exactly one of spool_dir (pushed frames) or url (a camera opened by URL)")
        if c.url:
            scheme = c.url.split("://", 1)[0] if "://" in c.url else ""
            _need(scheme in CAMERA_URL_SCHEMES, f"camera[{i}].url",
                  f"{c.url!r}: the scheme must be one of {', '.join(CAMERA_URL_SCHEMES)} "
                  f"(e.g. rtsp://host/stream, file:///video.mp4, folder:///frames)")
            _check_camera_url(f"camera[{i}].url", c.url)
            _need(0 < c.max_fps <= 60, f"camera[{i}].max_fps", "must be in (0, 60]")
            _need(0 <= c.latency_s <= 5, f"camera[{i}].latency_s", "must be within 0 … 5 s")
        _need(not (c.stream_url and c.url), f"camera[{i}].stream_url",
              "a camera opened by url streams through it; stream_url is for spool cameras")
        if c.stream_url:
            _need(c.stream_url.split(":", 1)[0].lower() in CAMERA_URL_SCHEMES,
                  f"camera[{i}].stream_url", f"scheme must be one of {CAMERA_URL_SCHEMES}")
            _check_camera_url(f"camera[{i}].stream_url", c.stream_url)
        _need(c.capture in ("continuous", "triggered"), f"camera[{i}].capture",
              "must be \"continuous\" or \"triggered\"")
        _need(c.capture == "continuous" or bool(c.url), f"camera[{i}].capture",
              "\"triggered\" needs a camera opened by url")
        _need(0 <= c.trigger_distance_m <= 200, f"camera[{i}].trigger_distance_m",
              "must be within 0 … 200 m")
        _check_lane_region(f"camera[{i}].lane_region", c.lane_region)
    k = cfg.camera_clips
    _need(0 <= k.clip_before_s <= 30, "cameras.clip_before_s", "must be within 0 … 30 s")
    _need(0 < k.clip_after_s <= 30, "cameras.clip_after_s", "must be within (0, 30] s")
    _need(0 < k.clip_fps <= 30, "cameras.clip_fps", "must be within (0, 30]")
    _need(64 <= k.clip_max_width <= 1920, "cameras.clip_max_width",
          "must be within 64 … 1920 pixels")


def _check_lane_region(key: str, region: tuple[float, ...]) -> None:
    """Empty (the whole frame) or [left, top, right, bottom], fractions of the frame."""
    if not region:
        return
    _need(len(region) == 4, key, f"{list(region)}: give [left, top, right, bottom] (4 numbers, "
          "fractions of the frame), or leave it empty for the whole frame")
    left, top, right, bottom = region
    _need(0 <= left < right <= 1 and 0 <= top < bottom <= 1, key,
          f"{list(region)}: needs 0 <= left < right <= 1 and 0 <= top < bottom <= 1 "
          "(fractions of the frame's width and height)")


def _check_pipeline(cfg: StationConfig) -> None:
    """Linking, plate reading, evidence and the HTTP ports."""
    lk = cfg.linking
    _need(0 < lk.window_s <= 5, "linking.window_s", "must be in (0, 5] s")
    _need(0 <= lk.wait_s <= 60, "linking.wait_s", "must be within 0 … 60 s")
    v = cfg.vision
    _need(v.read in ("all", "candidates", "none"), "vision.read",
          "must be \"all\", \"candidates\" or \"none\"")
    _need(0 < v.candidate_margin <= 1.5, "vision.candidate_margin", "must be in (0, 1.5]")
    _need(1 <= v.workers <= 8, "vision.workers", "must be 1 … 8")
    _need(v.inference_backend in INFERENCE_BACKENDS, "vision.inference_backend",
          f"must be one of {', '.join(INFERENCE_BACKENDS)}")
    _need(v.inference_precision in INFERENCE_PRECISIONS, "vision.inference_precision",
          f"must be one of {', '.join(INFERENCE_PRECISIONS)}")
    _need(cfg.evidence.min_free_mb >= 0, "evidence.min_free_mb", "must be >= 0")
    for key in ("metrics_port", "console_port"):
        port = getattr(cfg.http, key)
        _need(0 <= port <= 65535, f"http.{key}", "must be 0 … 65535")


def _check_clock(cfg: StationConfig) -> None:
    """The time-source check."""
    from zhichao.station.gpsd import parse_gpsd
    from zhichao.station.timesource import parse_server

    c = cfg.clock
    for i, server in enumerate(c.servers):
        try:
            host, port = parse_server(server)
        except ValueError:
            host, port = "", 0
        _need(bool(host) and 0 < port < 65536, f"clock.servers[{i}]",
              f"{server!r} is not host, host:port or [v6]:port")
    for i, address in enumerate(c.gnss):
        try:
            host, port = parse_gpsd(address)
        except ValueError:
            host, port = "", 0
        _need(bool(host) and 0 < port < 65536, f"clock.gnss[{i}]",
              f"{address!r} is not gpsd://host:port (or host, host:port, [v6]:port)")
    _need(0 < c.max_offset_ms <= 10_000, "clock.max_offset_ms", "must be in (0, 10000] ms")
    _need(0 < c.check_interval_s <= 3600, "clock.check_interval_s",
          "must be in (0, 3600] s (the clock is checked at least hourly)")
    _need(0 < c.timeout_s <= 30, "clock.timeout_s", "must be in (0, 30] s")
    _need(0 < c.gnss_timeout_s <= 30, "clock.gnss_timeout_s", "must be in (0, 30] s")


def _check_simulation(cfg: StationConfig) -> None:
    """The simulated lane's options."""
    sim = cfg.simulation
    _need(sim.speed >= 0, "simulation.speed", "must be >= 0 (0: as fast as possible)")
    _need(sim.link in ("tcp", "pty"), "simulation.link", "must be \"tcp\" or \"pty\"")
    _need(1 <= sim.batch_vehicles <= 100, "simulation.batch_vehicles", "must be 1 … 100")
    _need(sim.max_vehicles >= 0, "simulation.max_vehicles", "must be >= 0")
    _need(0 <= sim.abnormal_fraction <= 1, "simulation.abnormal_fraction", "must be 0 … 1")
    _need(abs(sim.camera_clock_offset_ms) < 10_000, "simulation.camera_clock_offset_ms",
          "must be within ±10 s")
    _need(0 <= sim.camera_miss_fraction <= 1, "simulation.camera_miss_fraction", "must be 0 … 1")
    _need(0 <= sim.camera_stream_fps <= 30, "simulation.camera_stream_fps",
          "must be 0 … 30 (0: the simulated cameras do not stream)")
    if sim.start_utc:
        _utc("simulation.start_utc", sim.start_utc)
    _need(-50 < sim.drift_pct < 100, "simulation.drift_pct", "must be within -50 … 100 %")
    _need(sim.drift_pct == 0 or bool(sim.drift_start_utc), "simulation.drift_start_utc",
          "is required with simulation.drift_pct")
    if sim.drift_start_utc:
        _utc("simulation.drift_start_utc", sim.drift_start_utc)
    _need(sim.drift_ramp_h >= 0, "simulation.drift_ramp_h", "must be >= 0")
    names = {f"r{r + 1}{side}" for r in range(len(cfg.wim.sensor.rows_x_m)) for side in "LR"}
    for i, ch in enumerate(sim.drift_channels):
        _need(ch in names, f"simulation.drift_channels[{i}]",
              f"{ch!r} is not a channel of this lane ({sorted(names)})")
    _need(len(sim.speed_kmh) == 2 and 1 <= sim.speed_kmh[0] <= sim.speed_kmh[1] <= 150,
          "simulation.speed_kmh", "must be [low, high] within 1 … 150 km/h")


def _check_retention(cfg: StationConfig) -> None:
    """``[retention]``: the period of personal data of passages that are no case."""
    r = cfg.retention
    _need(1 <= r.passage_days <= 3650, "retention.passage_days",
          "must be 1 … 3650 days (30 is the unconfirmed default)")
    _need(60 <= r.check_interval_s <= 86400, "retention.check_interval_s",
          "must be within 60 … 86400 s")
    if cfg.static_scale.url:  # a reading may be linked up to max_delay_s after its passage
        _need(r.passage_days * 86400 > cfg.static_scale.max_delay_s + 3600,
              "retention.passage_days", f"{r.passage_days} days leaves no time to link a "
              f"static re-weighing (static_scale.max_delay_s = "
              f"{cfg.static_scale.max_delay_s:g} s) before the passage is purged")


def _device_file(cfg: StationConfig) -> Any:
    """The ``device.status_file`` record (``DeviceLegalStatus``), checked against the site
    and lane; errors name the key."""
    from zhichao.calibration.errors import CalibrationError
    from zhichao.calibration.legal import DeviceLegalStatus

    key = "device.status_file"
    path = cfg.path(cfg.device.status_file)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(key, f"{path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise _fail(key, f"{path}: not valid JSON ({exc})") from None
    try:
        device = DeviceLegalStatus.from_json(raw, str(path))
    except (CalibrationError, TypeError, ValueError, AttributeError) as exc:
        raise _fail(key, f"{path}: not a valid zhichao.device/1 record ({exc})") from None
    if device.site_id != cfg.site.site_id or device.lane_id != cfg.lane.lane_id:
        raise _fail(key, f"{path} describes site {device.site_id!r} lane {device.lane_id!r}, "
                         f"not this station's site {cfg.site.site_id!r} lane "
                         f"{cfg.lane.lane_id!r}")
    return device
