"""Exception tree of the weighing stage.

::

    ZhichaoError (zhichao)
     +-- WeighingError              root of this stage
         +-- WeighingInputError     arrays or recordings the core cannot weigh (shape, dtype, NaN)
         +-- CalibrationProfileError  a calibration profile is unreadable or does not fit the lane
         +-- WeighingConfigError    a configuration value is out of range
"""

from __future__ import annotations

from zhichao.errors import ZhichaoError


class WeighingError(ZhichaoError):
    """Root of the weighing stage."""


class WeighingInputError(WeighingError, ValueError):
    """Input the core cannot process; the message says what and where."""


class CalibrationProfileError(WeighingError):
    """A calibration profile is unreadable, inconsistent, or for another lane."""


class WeighingConfigError(WeighingError, ValueError):
    """A configuration value is out of range."""
