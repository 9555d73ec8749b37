"""Exceptions of the sync part of the service stage.

Tree::

    ZhichaoError
    └── ServiceError              root of the service stage (zhichao.service.errors)
        └── SyncError             station → center sync
            ├── OutboxError       the station outbox file is unusable or an item is malformed
            └── ReceiptError      a center receipt is malformed or not signed by the center

A refusal by the center is not an exception: it is an answer with a machine code and a
zh-CN reason (``zhichao.service.sync.wire.REFUSALS``).
"""

from __future__ import annotations

from zhichao.service.errors import ServiceError


class SyncError(ServiceError):
    """Root of every exception the station → center sync raises on purpose."""


class OutboxError(SyncError):
    """The outbox database cannot be opened, or an item to enqueue is malformed."""


class ReceiptError(SyncError):
    """A receipt from the center is malformed, for another item, or not signed by the center."""
