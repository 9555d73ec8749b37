"""The unattended station: one lane from raw samples to sealed, uploaded evidence
(docs/station.md). ``zhichao run`` starts it (:mod:`.run_cli`)."""
