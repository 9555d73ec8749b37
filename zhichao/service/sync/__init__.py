"""Station → center sync (issue #7 part 5); see docs/sync.md.

Station side: :mod:`.outbox` (durable SQLite outbox), :mod:`.uploader` (idempotent uploads
with back-off). Center side: :mod:`.store` (verify, store, record, receipt),
:mod:`.center` (FastAPI router and standalone app), :mod:`.models` (own tables).
:mod:`.wire` is what both ends agree on.
"""
