"""zhichao.service: the top stage (FastAPI service, station runtime, CLI)."""

# The supervisor role is declared with its duties (duties.py) until accounts.ROLES_ZH lists
# it; importing the table here makes the role known wherever the service is used.
from zhichao.service import duties as _duties  # noqa: F401
