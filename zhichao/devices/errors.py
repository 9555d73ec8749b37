"""Exception tree of the devices stage.

::

    ZhichaoError (zhichao)
     +-- DeviceError                 root of this stage
         +-- RecordingError          a zhichao.raw/1 file is unreadable or inconsistent
         +-- SimulationError         the simulator was asked for something impossible
         +-- DeviceConfigurationError  a device URL, name or setting is invalid
         +-- DeviceNotAvailableError   a backend is unknown or its dependency cannot be imported
         +-- DeviceClosedError         an operation on a device that was closed
         +-- DeviceConnectionError     the link to a device cannot be opened or was lost
         |   +-- DeviceTimeoutError    one phase (connect, read, write) ran past its time limit
         +-- DeviceProtocolError       the device answered something that cannot be understood

Foreign exceptions (``OSError``, ``serial.SerialException``, ``pymodbus`` errors, OpenCV
errors) are translated into these at the transport boundary, always ``raise ... from exc``.
Drivers count and log bad *data* (garbage bytes, wrong CRC, absurd values) instead of
raising: a bad frame never ends a stream.
"""

from __future__ import annotations

from zhichao.errors import ZhichaoError


class DeviceError(ZhichaoError):
    """Root of the devices stage."""


class RecordingError(DeviceError):
    """A recording is unreadable or inconsistent; the message names the file and the problem."""


class SimulationError(DeviceError):
    """The simulator cannot produce what was asked."""


class DeviceConfigurationError(DeviceError):
    """A device URL, backend name or setting is invalid; the message says which and why."""


class DeviceNotAvailableError(DeviceError):
    """The backend is unknown, or the module behind it cannot be imported."""


class DeviceClosedError(DeviceError):
    """The device was closed; open a new one."""


class DeviceConnectionError(DeviceError):
    """The link to the device cannot be opened, or it was lost."""


class DeviceTimeoutError(DeviceConnectionError):
    """A connect, read or write phase did not finish within its time limit."""


class DeviceProtocolError(DeviceError):
    """The device sent something that cannot be understood (a reply, not streamed data)."""
