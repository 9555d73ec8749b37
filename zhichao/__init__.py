"""zhichao (治超): non-site overload enforcement.

Stages, lowest first (a stage never imports a higher one)::

    devices -> weighing -> calibration -> vision -> evidence -> service
"""

__version__ = "0.1.0"

STAGES: tuple[str, ...] = ("devices", "weighing", "calibration", "vision", "evidence", "service")
