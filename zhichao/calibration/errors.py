"""Exception tree of the calibration stage.

::

    ZhichaoError (zhichao)
     +-- CalibrationError            root of this stage
         +-- ReferenceFileError      a reference-weights file is unreadable or inconsistent
         +-- CalibrationFitError     the data cannot determine a profile (too few passes, …)
         +-- AccuracyConfigError     an accuracy-class table or setting is invalid
         +-- DeviceRecordError       a device legal-status record is invalid
         +-- DriftStateError         a drift monitor's saved state is invalid
"""

from __future__ import annotations

from zhichao.errors import ZhichaoError


class CalibrationError(ZhichaoError):
    """Root of the calibration stage."""


class ReferenceFileError(CalibrationError, ValueError):
    """A reference file (static weights) is unreadable; the message names file and line."""


class CalibrationFitError(CalibrationError):
    """The passes cannot determine a calibration profile; the message says why."""


class AccuracyConfigError(CalibrationError, ValueError):
    """An accuracy-class table or verification setting is invalid."""


class DeviceRecordError(CalibrationError, ValueError):
    """A device legal-status record is invalid; the message names the field."""


class DriftStateError(CalibrationError, ValueError):
    """A drift monitor's configuration or saved state is invalid."""
