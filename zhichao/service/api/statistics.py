"""Annual 行政执法 statistics, as JSON or CSV."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from zhichao.service import duties, stats
from zhichao.service.api.deps import API, SessionDep, StatisticsReader
from zhichao.service.api.schemas import STAFF_ERRORS, StatisticsOut, media_answer

router = APIRouter(prefix=API, tags=["statistics"], responses=STAFF_ERRORS)
CSV = media_answer("format=csv：year,metric,label_zh,value", "text/csv")


@router.get("/statistics/{year}", summary="年度行政执法统计（JSON 或 CSV）",
            openapi_extra=duties.openapi_extra(roles=duties.STATISTICS_READ),
            response_model=StatisticsOut, responses=CSV)
def statistics(year: Annotated[int, Path(ge=2000, le=2100)], session: SessionDep,
               user: StatisticsReader,
               format: Annotated[str, Query(pattern="^(json|csv)$")] = "json"
               ) -> StatisticsOut | Response:
    del user
    figures = stats.annual_statistics(session, year)
    if format == "csv":
        return Response(stats.statistics_csv(figures), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="statistics-{year}.csv"'})
    return StatisticsOut.model_validate(figures)
