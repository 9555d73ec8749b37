"""zhichao.devices: the lowest stage — where bytes and samples from the field become data.

Contains the ``zhichao.raw/1`` recording format (:mod:`zhichao.devices.recording`),
the traffic simulator (:mod:`zhichao.devices.sim`) and device drivers.
"""
