"""Numba settings, in one place.

``fastmath`` stays off: a legal measurement chain must give bit-identical results between
the compiled kernels and their reference implementations, and reassociation would not.
Set ``NUMBA_DISABLE_JIT=1`` to run every kernel as plain Python (coverage, debugging).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])

FASTMATH: bool = False
CACHE: bool = True
NOGIL: bool = True


def kernel(func: F) -> F:
    """Compile a private kernel with the project's settings (nopython mode)."""
    compiled: F = numba.njit(  # type: ignore[assignment]
        cache=CACHE, nogil=NOGIL, fastmath=FASTMATH)(func)
    return compiled
