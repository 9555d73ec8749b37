"""Simulated twins: devices that speak the real protocols over real transports.

Each twin listens on 127.0.0.1 (TCP, or a pymodbus server) or on a pseudo-terminal pair
(``os.openpty``), runs in a background thread, and is fed from any ``zhichao.raw/1``
:class:`~zhichao.devices.recording.Recording` or from plain values — it does not depend on
the simulator's internals. A :class:`~zhichao.devices.faults.FaultInjector` can sit between
a twin and its driver.
"""
