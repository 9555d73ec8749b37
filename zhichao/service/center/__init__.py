"""The enforcement center's receiving end of the station → center sync (docs/sync.md):
:mod:`.store` (verify, store, record, receipt), :mod:`.server` (FastAPI router and the
standalone ingest app), :mod:`.models` (its own tables), :mod:`.service_hook` (accepted
items into the review service's cases). The wire both ends agree on is :mod:`zhichao.sync`.
"""
