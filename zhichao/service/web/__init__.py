"""Server-rendered zh-CN web console and owner portal on top of the service API.

``create_console_app(settings)`` is the one entry point: the JSON API of
:func:`zhichao.service.app.create_app` plus the pages. See ``docs/web.md``.
"""

from zhichao.service.web.console import create_console_app
from zhichao.service.web.security import WebSettings

__all__ = ["WebSettings", "create_console_app"]
