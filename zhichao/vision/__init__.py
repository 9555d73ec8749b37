"""zhichao.vision stage: plate detection, reading and the per-vehicle plate decision.

Entry points (importing them loads no model; sessions start on first use):

- :class:`zhichao.vision.reader.PlateReader` — read plates in one frame or crop.
- :func:`zhichao.vision.vehicle.decide_vehicle` — several frames → one decision.
- :class:`zhichao.vision.policy.PlatePolicy` — when a read may skip manual correction.
- ``zhichao plates`` — the command line (:mod:`zhichao.vision.cli`).

See ``docs/vision.md`` for the design and the measured figures.
"""
