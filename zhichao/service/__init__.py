"""zhichao.service: the center's review service (models, workflow, accounts, owners, ingest,
audit, events, statistics, supervision, API, console, owner portal, the receiving end of sync)."""
