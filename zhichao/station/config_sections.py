"""The sections of ``station.toml``, each a frozen dataclass with its defaults (the embedded
defaults describe a complete simulated lane); :mod:`zhichao.station.config` reads, builds
and validates them (``docs/station.md`` explains each key)."""

from __future__ import annotations

from dataclasses import dataclass, field

from zhichao.vision.runtime import DEFAULT_INFERENCE_BACKEND, DEFAULT_INFERENCE_PRECISION


@dataclass(frozen=True)
class StationSection:
    station_id: str = "SIM-STATION-01"
    data_dir: str = "zhichao-station"  # relative paths resolve against the config's folder
    key_file: str = ""  # default: <data_dir>/station-key.pem, created on first start
    key_name: str = ""  # default: zhichao-station-<station_id>
    center_url: str = ""  # empty: no center; the outbox only grows
    center_key_file: str = ""  # the center's Ed25519 public key (PEM): checks its receipts
    upload_max_delay_s: float = 60.0  # longest back-off while the center is down (a guess)
    upload_timeout_s: float = 30.0  # one HTTP request to the center
    log_json: bool = True
    # a preallocated file in the data folder that start-up deletes on a full disk, so the
    # database can open and the disk_full alarm be stored (zhichao.station.diskspace)
    disk_reserve_mb: float = 64.0


@dataclass(frozen=True)
class SiteSection:
    site_id: str = "SIM-SITE-01"
    name_zh: str = "模拟治超检测点"
    road_zh: str = "G60 沪昆高速"
    stake_zh: str = "K100+000"
    jurisdiction: str = "CN-ZJ"
    published_utc: str = "2025-06-01T00:00:00Z"
    announcement_zh: str = "模拟站点公告（仅用于测试，不具法律效力）"
    authority_zh: str = "模拟交通运输执法机构"
    handling_place_zh: str = "模拟执法站"


@dataclass(frozen=True)
class LaneSection:
    lane_id: str = "1"


@dataclass(frozen=True)
class SensorSection:
    """Strip geometry: one row per entry of ``rows_x_m``; two half-strips (L, R) per row."""

    rows_x_m: tuple[float, ...] = (0.0, 2.0, 4.5, 7.5)
    strip_width_m: float = 0.05
    sensitivity_per_n: float = 1.0e-4
    full_scale: float = 10.0
    sample_rate_hz: float = 5000.0
    pavement_temperature_c: float = 20.0


@dataclass(frozen=True)
class WimSection:
    url: str = "sim"  # "sim" or a WIM device URL (docs/devices.md): samples or records
    calibration_profile: str = ""  # path to a zhichao.calibration/1 profile; empty: identity
    read_timeout_s: float = 0.1
    sensor: SensorSection = field(default_factory=SensorSection)
    # the site's σ(v) (docs/calibration.md): a zhichao.scatter/1 file (`zhichao scatter`),
    # and the lane's own in-service passages pooled every `pool_every_passages` passages
    # over the last `pool_window_days` (guesses: engineering choices, not law)
    scatter_file: str = ""
    pool_scatter: bool = True
    pool_every_passages: int = 200
    pool_window_days: float = 30.0
    pool_max_passages: int = 20000


@dataclass(frozen=True)
class DeviceSection:
    """The WIM device's legal status (``zhichao.calibration.legal.DeviceLegalStatus``): from
    these keys, or from ``status_file`` (a ``zhichao.device/1`` JSON record, e.g. the
    calibration stage's register), which then replaces them."""

    status_file: str = ""  # zhichao.device/1 JSON; empty: the keys below
    installation_type: str = "in_pavement_strip"
    device_id: str = "SIM-WIM-01"
    technical_review_approved: bool = True
    technical_review_date: str = "2025-05-01"
    legal_review_approved: bool = True
    legal_review_date: str = "2025-05-10"
    accuracy_class: str = "5"
    certificate_number: str = "SIM-CERT-0001"
    certificate_issuer: str = "模拟计量检定机构"
    certificate_valid_from: str = "2025-05-01T00:00:00Z"
    certificate_valid_to: str = "2027-05-01T00:00:00Z"
    drift_alarm_open: bool = False
    manufacturer: str = "simulated"
    model: str = "zhichao twin"


@dataclass(frozen=True)
class DriftSection:
    """The drift monitor (``zhichao.calibration.drift.DriftMonitor``) on every weighed
    vehicle; its CUSUM parameters are the calibration stage's defaults."""

    enabled: bool = True
    baseline_n: int = 500  # trucks per statistic that define "in control" after a reset


@dataclass(frozen=True)
class CameraSection:
    """One camera: exactly one of ``spool_dir`` (it pushes JPEG files there, FTP style) or
    ``url`` (opened by the devices stage: folder://, file://, rtsp://, usb://, sim://)."""

    camera_id: str = "CAM-FRONT-1"
    role: str = "front"
    spool_dir: str = ""  # where the camera pushes its JPEG frames (FTP-push)
    trigger_distance_m: float = 12.0  # row 1 to the point where the frame is taken [m]
    url: str = ""  # a devices-stage camera URL instead of a spool folder
    max_fps: float = 10.0  # URL cameras: frames taken into the linking path per second
    latency_s: float = 0.0  # URL cameras: exposure-to-delivery delay (measure per site)
    # URL cameras: "continuous" frames at max_fps, or "triggered": one frame at each
    # vehicle's predicted arrival (continuous again after TRIGGER_MISSES misses in a row)
    capture: str = "continuous"
    # a camera that pushes stills (spool_dir) and also streams video: its stream URL
    # (rtsp://, http:// MJPEG, …), recorded for passage clips (zhichao.station.clips)
    stream_url: str = ""
    # where this camera sees the weighed vehicle's plate: fractions [left, top, right, bottom]
    # of the frame, set at installation from the lane geometry and the trigger position; a
    # plate whose centre lies outside is taken as another vehicle's. Empty: the whole frame
    lane_region: tuple[float, ...] = ()


@dataclass(frozen=True)
class ClipSection:
    """Passage clips (``[cameras]`` in station.toml): each streaming camera keeps its last
    ``clip_before_s + clip_after_s + 3`` s of frames at up to ``clip_fps``, scaled to at
    most ``clip_max_width`` pixels wide (memory per camera ≈ that × fps × width × height
    × 3 bytes); a case's package gets the clip around the passage."""

    clip_before_s: float = 3.0
    clip_after_s: float = 3.0
    clip_fps: float = 10.0
    clip_max_width: int = 640


@dataclass(frozen=True)
class LinkingSection:
    window_s: float = 0.6  # a frame more than this from the predicted time is not linked
    wait_s: float = 10.0  # give up waiting for a frame this long after its window [s]
    max_clock_offset_s: float = 2.0  # a device clock further off than this raises an alarm


@dataclass(frozen=True)
class VisionSection:
    read: str = "candidates"  # "all", "candidates" (trucks that may be overloaded), "none"
    candidate_margin: float = 0.9  # read plates when gross >= margin × limit (a guess)
    workers: int = 1
    # what runs the plate models (docs/vision.md, "Pipeline"): "openvino" or "onnxruntime",
    # in "bf16" (OpenVINO, where the CPU computes it natively; float32 elsewhere) or "f32"
    inference_backend: str = DEFAULT_INFERENCE_BACKEND
    inference_precision: str = DEFAULT_INFERENCE_PRECISION


@dataclass(frozen=True)
class EvidenceSection:
    dir: str = "evidence"
    min_free_mb: float = 64.0  # below this the station stops sealing and raises an alarm
    render_documents: bool = True


@dataclass(frozen=True)
class ClockSection:
    """Checking the station's time source (:mod:`zhichao.station.clockcheck`). A package
    claims a verified clock only when a good check covers its passage. On a simulated
    lane the reference is the simulator's published clock and ``servers`` and ``gnss``
    are not used. Every source that answered must agree (their intervals for the true
    offset at most ``max_offset_ms`` apart) and the answer with the smallest error bound is
    judged (:func:`zhichao.station.clockcheck.judge`)."""

    servers: tuple[str, ...] = ()  # NTP servers, "host" or "host:port"
    # gpsd daemons of GNSS receivers, "gpsd://host:port" (or "host[:port]", port 2947);
    # no servers and no gnss: the clock of a real lane is not verified
    gnss: tuple[str, ...] = ()
    # |offset| + error bound beyond this fails the check; 500 ms is not from a standard
    # (none found in shared/reference): unconfirmed, the same as the gate's default
    max_offset_ms: float = 500.0
    check_interval_s: float = 3600.0  # at least hourly (issue #17)
    timeout_s: float = 2.0  # one NTP server's answer
    gnss_timeout_s: float = 5.0  # listening to one gpsd for a fix and a PPS (1 Hz)


@dataclass(frozen=True)
class RetentionSection:
    """Retention of personal data at the station (:mod:`zhichao.station.retention`): the
    plate and camera frames of a passage that is no case are removed ``passage_days`` after
    its passage time. 30 days is UNCONFIRMED: no legal period was found; 个人信息保护法
    Art. 19 only says 保存期限应当为实现处理目的所必要的最短时间."""

    passage_days: int = 30  # unconfirmed (no legal period found); 1 … 3650
    check_interval_s: float = 3600.0  # the running station checks at start and this often


@dataclass(frozen=True)
class HttpSection:
    host: str = "127.0.0.1"
    metrics_port: int = 9108  # health endpoint and Prometheus metrics; 0: off
    console_port: int = 8000  # web console (the service app); 0: off


@dataclass(frozen=True)
class SimulationSection:
    """The embedded simulated lane (used when ``wim.url = "sim"``)."""

    seed: int = 1
    speed: float = 1.0  # 1.0 real time; 20.0 twenty times faster
    link: str = "tcp"  # "tcp" (loopback) or "pty"
    batch_vehicles: int = 10
    max_vehicles: int = 0  # 0: endless traffic
    abnormal_fraction: float = 0.1
    camera_clock_offset_ms: float = 120.0
    camera_miss_fraction: float = 0.02  # frames the simulated camera fails to take
    camera_stream_fps: float = 12.0  # the cameras' MJPEG streams, frames per wall second; 0: off
    trucks_only: bool = False
    speed_kmh: tuple[float, ...] = (5.0, 100.0)  # range of vehicle speeds [km/h]
    start_utc: str = ""  # simulated time of the first sample; empty: now
    drift_pct: float = 0.0  # injected sensitivity drift (SimOptions.drift_pct); 0: none
    drift_start_utc: str = ""  # when the injected drift begins (required with drift_pct)
    drift_ramp_h: float = 0.0  # 0: a step; else linear over this many hours
    drift_channels: tuple[str, ...] = ()  # e.g. ["r1L", "r1R"]; empty: all channels


@dataclass(frozen=True)
class StaticScaleSection:
    """The station's static weighbridge for re-weighing (复检); none while ``url`` is empty.
    Checked by :func:`zhichao.station.static_scale.check_config` (docs/station.md)."""

    url: str = ""  # a weighing-indicator URL of the devices stage (xk3190+…, toledo+…, modbus+…)
    scale_id: str = ""
    certificate_number: str = ""
    certificate_issuer: str = ""
    accuracy_class: str = "III"  # JJG 539 / OIML R76: III (中准确度级) or IIII
    division_kg: float = 20.0  # verification scale interval e [kg] (e = d on a truck scale)
    max_capacity_kg: float = 100000.0
    certificate_valid_from: str = ""  # RFC 3339; empty: not stated
    certificate_valid_until: str = ""  # RFC 3339, required with url
    unconfirmed: tuple[str, ...] = ()  # values a human must still confirm (shown in cases)
    stable_readings: int = 5  # equal readings that make a weight stable without a stable bit
    stable_min_s: float = 1.0  # … spanning at least this long
    max_delay_s: float = 7200.0  # a reading later after the passage is not linked (a guess)
