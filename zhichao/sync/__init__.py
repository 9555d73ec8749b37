"""Station → center sync: what both ends agree on (docs/sync.md).

:mod:`.wire` (item kinds, canonical forms, receipts, refusal codes) and :mod:`.errors`.
The station's end is :mod:`zhichao.station.sync_outbox` (durable SQLite outbox) and
:mod:`zhichao.station.uploader` (idempotent uploads with back-off); the center's end is
:mod:`zhichao.service.center`.
"""
