"""Exceptions of the service stage.

Tree::

    ZhichaoError
    └── ServiceError                  root of this stage
        ├── ConfigError               a setting or database URL is unusable
        ├── NotFoundError             the object does not exist (or may not be seen)
        ├── AuthenticationError       no valid session / token / password
        ├── PermissionDeniedError     the user's role or relation to the case forbids it
        ├── InvalidInputError         a field is malformed (names the field)
        ├── WorkflowError             the transition is not allowed from the case's state
        ├── ConcurrentUpdateError     someone else changed the object first (optimistic lock)
        ├── DeadlineError             a statutory deadline has passed / not yet passed
        ├── CalendarError             the holiday calendar has no data for a year
        ├── RateLimitedError          too many requests from one client
        ├── AuditLogError             the audit log chain does not verify
        └── IngestError               an ingested package or passage is inconsistent

Each carries an English ``message`` (for logs and developers) and a zh-CN ``message_zh``
(what an officer or owner reads), and ``http_status`` for the JSON API.
"""

from __future__ import annotations

from zhichao.errors import ZhichaoError


class ServiceError(ZhichaoError):
    """Root of every exception the service stage raises on purpose."""

    http_status = 400
    default_zh = "请求无法处理"

    def __init__(self, message: str, message_zh: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.message_zh = message_zh or self.default_zh


class ConfigError(ServiceError):
    http_status = 500
    default_zh = "服务配置错误"


class NotFoundError(ServiceError):
    http_status = 404
    default_zh = "未找到"


class AuthenticationError(ServiceError):
    http_status = 401
    default_zh = "未登录或登录已过期"


class PermissionDeniedError(ServiceError):
    http_status = 403
    default_zh = "无权执行此操作"


class InvalidInputError(ServiceError):
    http_status = 422
    default_zh = "输入有误"


class WorkflowError(ServiceError):
    http_status = 409
    default_zh = "当前案件状态不允许此操作"


class ConcurrentUpdateError(ServiceError):
    http_status = 409
    default_zh = "案件已被他人更新，请刷新后重试"


class DeadlineError(ServiceError):
    http_status = 409
    default_zh = "不在法定期限内"


class CalendarError(ServiceError):
    http_status = 409
    default_zh = "节假日日历缺少该年份数据，无法计算期限，需人工确定"


class RateLimitedError(ServiceError):
    http_status = 429
    default_zh = "请求过于频繁，请稍后再试"


class AuditLogError(ServiceError):
    http_status = 500
    default_zh = "审计日志校验失败"


class IngestError(ServiceError):
    http_status = 422
    default_zh = "证据包登记失败"
