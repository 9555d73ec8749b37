"""Exception tree of the devices stage.

::

    ZhichaoError (zhichao)
     +-- DeviceError                 root of this stage
         +-- RecordingError          a zhichao.raw/1 file is unreadable or inconsistent
         +-- SimulationError         the simulator was asked for something impossible
"""

from __future__ import annotations

from zhichao.errors import ZhichaoError


class DeviceError(ZhichaoError):
    """Root of the devices stage."""


class RecordingError(DeviceError):
    """A recording is unreadable or inconsistent; the message names the file and the problem."""


class SimulationError(DeviceError):
    """The simulator cannot produce what was asked."""
