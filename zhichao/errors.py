"""The common ancestor of every stage's exception root.

Each stage has exactly one root of its own (``DeviceError``, ``WeighingError``,
``CalibrationError``, ``VisionError``, ``EvidenceError``, ``SyncError``, ``ServiceError``,
``StationError``), all derived from :class:`ZhichaoError`, so a caller can catch one stage
or all.
"""


class ZhichaoError(Exception):
    """Root of every exception zhichao raises on purpose."""
