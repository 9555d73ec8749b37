"""zhichao.devices: the lowest stage — where bytes and samples from the field become data.

Contains the ``zhichao.raw/1`` recording format (:mod:`zhichao.devices.recording`),
the traffic simulator (:mod:`zhichao.devices.sim`) and device drivers: the abstract kinds
(:mod:`~zhichao.devices.sample_source`, :mod:`~zhichao.devices.record_source`,
:mod:`~zhichao.devices.weighing_indicator`, :mod:`~zhichao.devices.camera`), the data they
deliver (:mod:`~zhichao.devices.data`), sans-I/O codecs and trackers, one module per
backend (:mod:`zhichao.devices.interfaces`) and the registry that opens a device from its
URL (:func:`zhichao.devices.registry.open_device`, ``open_wim_device``).
"""
