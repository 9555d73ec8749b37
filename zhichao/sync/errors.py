"""Exceptions of the sync stage (both ends of the station → center wire).

Tree::

    ZhichaoError
    └── SyncError             root of the sync stage
        ├── OutboxError       the station outbox file is unusable or an item is malformed
        └── ReceiptError      a center receipt is malformed or not signed by the center

A refusal by the center is not an exception: it is an answer with a machine code and a
zh-CN reason (``zhichao.sync.wire.REFUSALS``).
"""

from __future__ import annotations

from zhichao.errors import ZhichaoError


class SyncError(ZhichaoError):
    """Root of every exception the station → center sync raises on purpose."""


class OutboxError(SyncError):
    """The outbox database cannot be opened, or an item to enqueue is malformed."""


class ReceiptError(SyncError):
    """A receipt from the center is malformed, for another item, or not signed by the center."""
