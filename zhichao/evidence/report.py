"""What a verification produces: checks with a code, a result and bilingual text.

Shared by :mod:`zhichao.evidence.verify` (one package) and
:mod:`zhichao.evidence.verify_log` (the log, witnesses, review history).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

Emit = Callable[[str, str, str], None]
"""``emit(code, message_zh, message_en)``: one of :meth:`Checks.ok`, ``fail``, ``warn``."""


class Result(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"


RESULT_ZH = {Result.PASS: "通过", Result.FAIL: "失败", Result.WARN: "提示"}


@dataclass(frozen=True)
class Check:
    code: str
    result: Result
    message_zh: str
    message_en: str

    def line(self) -> str:
        return (f"[{RESULT_ZH[self.result]} {self.result}] {self.code}: "
                f"{self.message_zh} / {self.message_en}")


@dataclass
class Report:
    package: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.result is not Result.FAIL for c in self.checks)

    @property
    def origin_proven(self) -> bool:
        """Checked against a key the caller trusts (``--key``), not the package's own."""
        return "key.untrusted" not in self.codes(Result.WARN)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.result is Result.FAIL]

    def codes(self, result: Result = Result.FAIL) -> set[str]:
        return {c.code for c in self.checks if c.result is result}

    def text(self) -> str:
        lines = [f"核验对象 Package: {self.package}"]
        lines += [c.line() for c in self.checks]
        if not self.ok:
            verdict = (f"结论：{len(self.failures())} 项检查失败，证据包不可信。 / "
                       f"Result: {len(self.failures())} check(s) FAILED.")
        elif not self.origin_proven:
            verdict = ("结论：内容自洽（哈希、签名与日志证明彼此一致），但未用可信的站点公钥"
                       "（--key）核验，来源未经证实，不能据此认定证据真实。 / "
                       "Result: self-consistent, "
                       "but the origin is NOT proven (no trusted --key).")
        else:
            verdict = ("结论：全部检查通过，证据包完整、未被篡改。 / Result: all checks passed.")
        lines.append(verdict)
        return "\n".join(lines)



class Checks:
    """Appends checks to a report: ``ok``, ``fail`` and ``warn`` are :data:`Emit`."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def ok(self, code: str, zh: str, en: str) -> None:
        self.report.checks.append(Check(code, Result.PASS, zh, en))

    def fail(self, code: str, zh: str, en: str) -> None:
        self.report.checks.append(Check(code, Result.FAIL, zh, en))

    def warn(self, code: str, zh: str, en: str) -> None:
        self.report.checks.append(Check(code, Result.WARN, zh, en))


__all__ = ["RESULT_ZH", "Check", "Checks", "Emit", "Report", "Result"]
