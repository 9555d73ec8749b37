"""The accuracy-verification report: one self-contained HTML file (zh-CN) with its plots.

Plots are drawn with matplotlib's Agg backend and embedded as PNG data URIs, so the file
opens anywhere without network or other files; so is a small font subset (``fonts/``) with
the report's own zh-CN characters, for viewers without CJK fonts. Plot axes carry quantity
symbols and units only (v [km/h], T [°C], e [%]); their captions and every other text are
zh-CN.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from zhichao.calibration.accuracy import CRITERIA_ZH, AccuracyResult, PassResult
from zhichao.common import format_utc

PHASE_ZH = {"initial": "首次检定", "in_service": "使用中检验"}
FONT_PATH = Path(__file__).resolve().parent / "fonts" / "report-subset.ttf"


def _font_face() -> str:
    """@font-face for the shipped subset (the report's own zh-CN texts), if present."""
    try:
        data = base64.b64encode(FONT_PATH.read_bytes()).decode("ascii")
    except OSError:
        return ""
    return ("@font-face { font-family: 'zhichao-report'; "
            f"src: url(data:font/ttf;base64,{data}) format('truetype'); "
            "unicode-range: U+2E80-FFFF; }")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _mpe_lines(ax: Any, mpe_init: float | None, mpe_service: float | None) -> None:
    for m, style in ((mpe_init, "--"), (mpe_service, ":")):
        if m is not None:
            ax.axhline(m, color="#c0392b", ls=style, lw=1)
            ax.axhline(-m, color="#c0392b", ls=style, lw=1)


def plots(result: AccuracyResult, mpe_class: str = "5") -> dict[str, str]:
    """PNG data URIs: gross error vs speed, vs temperature, and its histogram."""
    valid = [p for p in result.valid if p.gross_error_pct is not None]
    g = result.tables["oiml_r134"]["gross"].get(mpe_class)
    mpe_i, mpe_s = (float(g[0]), float(g[1])) if g else (None, None)
    trucks = sorted({p.truck for p in valid})
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
    out: dict[str, str] = {}
    for key, xlabel, get in (("speed", "v [km/h]", lambda p: abs(p.speed_kmh or 0.0)),
                             ("temperature", "T [°C]", lambda p: p.temperature_c)):
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for i, t in enumerate(trucks):
            sel = [p for p in valid if p.truck == t]
            ax.scatter([get(p) for p in sel], [p.gross_error_pct or 0.0 for p in sel], s=16,
                       color=colours[i % len(colours)], label=f"#{i + 1}")
        _mpe_lines(ax, mpe_i, mpe_s)
        ax.axhline(0.0, color="#555555", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("e_gross [%]")
        ax.grid(alpha=0.3)
        if trucks:
            ax.legend(fontsize=8, loc="upper right")
        out[key] = _png(fig)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    errs = [p.gross_error_pct for p in valid if p.gross_error_pct is not None]
    if errs:
        ax.hist(errs, bins=min(30, max(5, len(errs) // 4)), color="#1f77b4", alpha=0.85)
    if mpe_i is not None:
        for m, style in ((mpe_i, "--"), (mpe_s, ":")):
            if m is not None:
                ax.axvline(m, color="#c0392b", ls=style, lw=1)
                ax.axvline(-m, color="#c0392b", ls=style, lw=1)
    ax.set_xlabel("e_gross [%]")
    ax.set_ylabel("n")
    ax.grid(alpha=0.3)
    out["histogram"] = _png(fig)
    return out


def _status_zh(x: Any) -> str:
    text = str(x)
    if text.startswith("C"):
        return "已确认（C）"
    if text.startswith("U"):
        return f"未确认（U，可配置替换）：{text}"
    return text


def _e(x: Any) -> str:
    return html.escape(str(x))


def _f(x: float | None, nd: int = 2) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def _cls(x: str | None) -> str:
    return "劣于表中所有等级" if x is None else _e(x)


def _table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def _pass_row(p: PassResult) -> list[str]:
    axles = p.axle_errors_pct()
    return [_e(p.recording), _e(p.truck), _f(p.speed_kmh, 1), _f(p.temperature_c, 1),
            _f(p.reference_gross_kg, 0), _f(p.gross_kg, 0), _f(p.gross_error_pct),
            _e(" / ".join(f"{a:+.1f}" for a in axles) if axles else "—"),
            "有效" if p.valid else f"无效：{_e(p.reason_zh or p.reason)}"]


def render_html(result: AccuracyResult, title: str = "动态称重准确度验证报告",
                generated_utc: datetime | None = None,
                inputs: dict[str, Any] | None = None) -> str:
    t = generated_utc or datetime.now(UTC)
    figs = plots(result)
    o = result.tables["oiml_r134"]
    c = result.tables["cost323"]
    summary = []
    for phase in ("initial", "in_service"):
        g, a = result.gross_class[phase], result.axle_class[phase]
        summary.append([PHASE_ZH[phase], "不予评定" if g.refused else _cls(g.achieved),
                        _f(g.max_abs_error_pct),
                        "不予评定" if a.refused else _cls(a.achieved), _f(a.max_abs_error_pct),
                        _e(a.detail)])
    cost = result.cost323
    cost_rows = []
    for crit, d in cost["criteria"].items():
        pis = " / ".join("—" if pi is None else f"{pi * 100:.1f}" for pi in d["pi"])
        cost_rows.append([_e(CRITERIA_ZH.get(crit, crit)), str(d["n"]), _f(d["mean_pct"]),
                          _f(d["sd_pct"]), _e(pis), _cls(d["achieved"])])
    band_html = ""
    for key, name in (("speed", "按车速分段"), ("temperature", "按路面温度分段")):
        rows = [[_e(b["band"]), str(b["n"]), _f(b["gross_mean_pct"]), _f(b["gross_sd_pct"]),
                 _f(b["gross_max_abs_pct"]), _f(b["axle_max_abs_pct"]),
                 _cls(b["class_initial"]), _cls(b["class_in_service"])]
                for b in result.bands.get(key, [])]
        band_html += f"<h3>{name}</h3>" + _table(
            ["区间", "有效过车数", "总重平均误差 %", "标准差 %", "总重最大绝对误差 %",
             "单轴最大绝对误差 %", "等级（首次检定）", "等级（使用中）"], rows)
    range_rows = []
    for name in sorted(o["gross"], key=lambda k: float(o["gross"][k][0])):
        cells = [_e(name)]
        for phase in ("initial", "in_service"):
            r = result.speed_ranges.get(phase, {}).get(name)
            cells.append("—" if r is None else
                         f"{r['speed_kmh'][0]:.1f}–{r['speed_kmh'][1]:.1f}"
                         f"（{r['n']}/{r['of']} 次）")
        range_rows.append(cells)
    mpe_rows = [[_e(k), _f(float(v[0])), _f(float(v[1])), _e(o["pairing"].get(k, ""))]
                for k, v in sorted(o["gross"].items(), key=lambda kv: float(kv[1][0]))]
    axle_rows = [[_e(k)] + [_f(float(x)) for x in v]
                 for k, v in sorted(o["axle"].items(), key=lambda kv: float(kv[1][0]))]
    delta_rows = [[_e(CRITERIA_ZH.get(k, k))] + [_e(x) for x in v]
                  for k, v in c["delta_pct"].items()]
    inputs = inputs or {}
    input_rows = [[_e(k), _e(v)] for k, v in inputs.items()]
    n_bad = len(result.passes) - len(result.valid)
    refusals = "".join(f"<li>{_e(r['text_zh'])}</li>" for r in result.refusals)
    refusal_html = (f'<p><strong>本次验证不予评定准确度等级：</strong></p><ul>{refusals}</ul>'
                    if refusals else "")
    captions = (("speed", "总重误差与车速",
                 "图 1　车货总重误差与车速（虚线：5 级首次检定 MPE，点线：使用中 MPE）"),
                ("temperature", "总重误差与温度", "图 2　车货总重误差与路面温度"),
                ("histogram", "总重误差分布", "图 3　车货总重误差分布"))
    figures = "\n".join(f'<figure><img alt="{alt}" src="{figs[key]}">'
                        f"<figcaption>{cap}</figcaption></figure>" for key, alt, cap in captions)
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>
{_font_face()}
body {{ font-family: "zhichao-report", "Noto Sans CJK SC", "DejaVu Sans", sans-serif; margin: 24px;
       color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }}
th, td {{ border: 1px solid #bbb; padding: 3px 8px; text-align: right; }}
th {{ background: #eef2f7; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 8px 16px 8px 0; }}
figcaption {{ font-size: 13px; color: #444; }}
.note {{ font-size: 12px; color: #555; }}
</style></head><body>
<h1>{_e(title)}</h1>
<p>生成时间（UTC）：{_e(format_utc(t))}　校准参数：{_e(result.profile_id or "无（标称灵敏度）")}
　过车总数：{len(result.passes)}，有效：{len(result.valid)}，无效：{n_bad}
（{result.rejected_fraction * 100:.1f} %）</p>
{_table(["项目", "值"], input_rows) if input_rows else ""}
<h2>结论：达到的准确度等级</h2>
{refusal_html}
<p class="note">OIML R134 / JJG 907 模式：每一次有效称量的误差都不得超过最大允许误差（MPE）。
轴载荷：两轴刚性参考车的单轴与静态轴载比较；其他车辆的轴及轴组载荷与其修正平均值比较。</p>
{_table(["阶段", "车货总重等级", "总重最大绝对误差 %", "轴载荷等级", "轴载最大偏差 %", "说明"],
        summary)}
<h3>COST 323 模式</h3>
<p class="note">置信水平 {cost["confidence"] * 100:.0f} %，要求 π ≥ π₀ = {cost["pi0"] * 100:.0f} %；
π 为单次误差落在 ±δ 内的概率的置信下限（正态模型）。总体等级：{_cls(cost["overall"])}。
表值状态：{_e(_status_zh(cost["status"]))}</p>
{_table(["准则", "样本数", "平均误差 %", "标准差 %",
         "π %（" + " / ".join(c["classes"]) + "）", "达到等级"], cost_rows)}
<h2>误差图</h2>
{figures}
<h2>分段误差</h2>
{band_html}
<h3>各总重等级有本次数据支持的车速范围</h3>
<p class="note">按车速排序的有效过车中，误差全部不超过该等级 MPE 的最长连续一段（首末两次过车的车速
及其次数）。这只是本次验证过车所显示的范围，并非保证：动态载荷会使少数过车超差，且车速越高越常见。
声明设备工作车速范围时应以此表和足够多的过车次数为依据。</p>
{_table(["总重等级", "首次检定 车速 km/h（次数）", "使用中 车速 km/h（次数）"], range_rows)}
<h2>所用限值表</h2>
<p class="note">来源：{_e(o["source"])}；总重表状态：首次检定
{_e(_status_zh(o["gross_status"]["initial"]))}，使用中
{_e(_status_zh(o["gross_status"]["in_service"]))}；轴载表状态：{_e(_status_zh(o["axle_status"]))}。
标为 U 的数值未经确认，可通过配置文件替换。</p>
{_table(["总重等级", "MPE 首次检定 %", "MPE 使用中 %", "对应轴载等级"], mpe_rows)}
{_table(["轴载等级", "两轴刚性车单轴 首次 %", "使用中 %", "其他车辆轴/轴组 首次 %", "使用中 %"],
        axle_rows)}
<p class="note">COST 323 δ 表（{_e(c["source"])}）：</p>
{_table(["准则"] + list(c["classes"]), delta_rows)}
<h2>逐车结果</h2>
{_table(["录制文件", "参考车辆", "车速 km/h", "路面温度 °C", "静态总重 kg", "动态总重 kg",
         "总重误差 %", "各轴误差 %", "状态"], [_pass_row(p) for p in result.passes])}
</body></html>
"""


def write_report(result: AccuracyResult, path: str | Path, **kwargs: Any) -> Path:
    p = Path(path)
    p.write_text(render_html(result, **kwargs), encoding="utf-8")
    return p
