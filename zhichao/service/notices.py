"""The texts the center serves, made by the evidence stage's one renderer
(``zhichao.evidence.notice_text``): the recorded ``Notice.text_zh`` and ``Decision.text_zh``
are those paragraphs, and the PDFs the center hands out are made from the recorded text,
so the served text, the record and the PDF cannot differ.

Facts come from the case's sealed manifest (``Case.package_path``); the plate and package
id from the case row (the reviewed values). The periods stated are the deployment's
(``DeadlinePolicy``), counted from service.
"""

from __future__ import annotations

from typing import Any

from zhichao.evidence import documents, notice_text
from zhichao.service import ingest
from zhichao.service.errors import IngestError, WorkflowError
from zhichao.service.models import Case, Decision
from zhichao.service.workdays import DeadlinePolicy

# Review and lawsuit periods stated in the decision (行政复议法 2023 Art. 20: 六十日;
# 行政诉讼法 2017 Art. 46: 六个月). Not in ../shared/reference: marked unconfirmed in docs.
REVIEW_DAYS = 60
LAWSUIT_MONTHS = 6
NOTICE_TITLE_ZH = "违法行为通知书"
DECISION_TITLE_ZH = "行政处罚决定书"
SERVED_FOOTER_ZH = ("本文书文字与系统记录的送达文本一致（时间均为北京时间）；"
                    "所据事实见已签名的证据包。")


def case_document(case: Case) -> dict[str, Any]:
    """The sealed manifest of ``case`` with the case row's package id (a zh-CN
    ``WorkflowError`` when the package cannot be read: no notice without its facts)."""
    try:
        manifest, _digest = ingest.read_package_manifest(case.package_path)
    except IngestError as exc:
        raise WorkflowError(f"case {case.id}: {exc}",
                            "证据包无法读取，不能生成文书（须先恢复证据包）") from exc
    if not isinstance(manifest.get("case"), dict):
        raise WorkflowError(f"case {case.id}: manifest has no case", "证据包缺少案件事实")
    return {**manifest, "package_id": case.package_id}


def notice_text_zh(case: Case, policy: DeadlinePolicy) -> str:
    """违法行为通知书 as served: the periods are the policy's, counted from service."""
    doc = case_document(case)
    penalty = dict(doc["case"].get("penalty") or {})
    if not penalty:
        raise WorkflowError(f"case {case.id}: no penalty proposal", "没有处罚建议，不能告知")
    penalty["hearing_right"] = {"yes": True, "no": False}.get(case.hearing_right or "")
    doc["case"] = {**doc["case"], "penalty": penalty}
    periods = notice_text.Periods(
        policy.statement.days, policy.statement.unit == "working",
        policy.hearing_request.days, policy.hearing_request.unit == "working")
    return "\n".join(notice_text.notice_paragraphs(doc, periods, plate=case.plate))


# What the served decision says for each outcome (a fine is stated with its amount).
DECIDED_ZH = {"fine": "罚款", "reduced": "罚款（依法减轻）", "warning": "警告",
              "education": "不予行政处罚，予以批评教育", "no_penalty": "不予行政处罚"}


def decision_text_zh(case: Case, decision: Decision) -> str:
    """行政处罚决定书 as served (Art. 59)."""
    doc = case_document(case)
    return "\n".join(notice_text.decision_paragraphs(
        doc, outcome_zh=DECIDED_ZH[decision.outcome], fine_yuan=decision.fine_yuan,
        reasons_zh=decision.reasons_zh, decided_utc=decision.decided_utc.isoformat(),
        plate=case.plate, review_days=REVIEW_DAYS, lawsuit_months=LAWSUIT_MONTHS))


def text_pdf(title_zh: str, text_zh: str) -> bytes:
    """A zh-CN PDF of a recorded text, paragraph by paragraph (the served copy)."""
    return documents.paragraphs_pdf(title_zh, text_zh.split("\n"), filename="served.pdf",
                                    footer=SERVED_FOOTER_ZH)
