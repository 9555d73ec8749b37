"""zhichao (治超): non-site overload enforcement.

Stages, lowest first (a stage never imports a higher one)::

    devices -> weighing -> calibration -> vision -> evidence -> sync -> service -> station

``zhichao.cli`` (the ``zhichao`` command) assembles every stage's commands.
"""

__version__ = "0.1.0"

STAGES: tuple[str, ...] = ("devices", "weighing", "calibration", "vision", "evidence", "sync",
                           "service", "station")
