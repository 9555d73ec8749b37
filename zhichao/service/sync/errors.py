"""Exceptions of the sync part of the service stage.

Tree::

    ZhichaoError
    └── SyncError                 root of station → center sync
        ├── OutboxError           the station outbox file is unusable or an item is malformed
        ├── ReceiptError          a center receipt is malformed or its signature does not verify
        └── RefusedError          the center refused an item for good (code + zh-CN reason)

The service core will get its own ``ServiceError``; when it exists ``SyncError`` should
derive from it (one root per stage). Until then it derives from ``ZhichaoError`` directly so
this part stands alone.
"""

from __future__ import annotations

from zhichao.errors import ZhichaoError


class SyncError(ZhichaoError):
    """Root of every exception the station → center sync raises on purpose."""


class OutboxError(SyncError):
    """The outbox database cannot be opened, or an item to enqueue is malformed."""


class ReceiptError(SyncError):
    """A receipt from the center is malformed, for another item, or not signed by the center."""


class RefusedError(SyncError):
    """The center refused an item permanently; ``code`` is machine-readable."""

    def __init__(self, code: str, message_zh: str, message_en: str) -> None:
        super().__init__(f"{code}: {message_zh} / {message_en}")
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en
