"""zhichao.service: the top stage (FastAPI service, station runtime, CLI)."""
