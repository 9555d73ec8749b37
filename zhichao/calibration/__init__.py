"""zhichao.calibration: fit profiles to reference trucks, verify the accuracy class, watch for
drift in service, and keep each device's legal status (see docs/calibration.md).

Public entry points: :func:`zhichao.calibration.fit.calibrate`,
:func:`zhichao.calibration.accuracy.verify_accuracy`,
:class:`zhichao.calibration.drift.DriftMonitor`,
:class:`zhichao.calibration.legal.DeviceLegalStatus` and
:func:`zhichao.calibration.legal.is_usable_at`.
"""
