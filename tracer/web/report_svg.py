"""Inline SVG for the report: sparklines of a statistic across steps and metric charts.

Points are (step, value) pairs; NaN and ±Inf break the line and show as red marks at the top.
Only numbers reach the SVG (labels come escaped from the caller), and no style attribute is
used, so the page's Content-Security-Policy needs no ``unsafe-inline``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tracer.formatting import number
from tracer.web.report_html import LINE_LIMIT, esc

Points = Sequence[tuple[int, float]]


def downsample(points: Points, limit: int) -> list[tuple[int, float]]:
    """At most about ``limit`` points: per bucket its lowest and highest value, in step order,
    so that a spike survives; non-finite values are always kept."""
    if len(points) <= limit:
        return list(points)
    buckets = max(1, limit // 2)
    size = len(points) / buckets
    kept: list[tuple[int, float]] = []
    for b in range(buckets):
        chunk = points[int(b * size) : int((b + 1) * size)]
        finite = [p for p in chunk if math.isfinite(p[1])]
        chosen = {p for p in chunk if not math.isfinite(p[1])}
        if finite:
            chosen.add(min(finite, key=lambda p: p[1]))
            chosen.add(max(finite, key=lambda p: p[1]))
        kept.extend(sorted(chosen))
    return kept


def _scale(points: Points, width: float, height: float, pad: float) -> list[tuple[float, float]]:
    """Pixel positions of the finite points (non-finite ones get a NaN y)."""
    finite = [v for _, v in points if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    first, last = points[0][0], points[-1][0]
    span_x, span_y = (last - first) or 1, (hi - lo) or 1.0
    out = []
    for step, value in points:
        x = pad + (width - 2 * pad) * ((step - first) / span_x if last != first else 0.5)
        if not math.isfinite(value):
            out.append((x, math.nan))
        elif hi == lo:
            out.append((x, height / 2))
        else:
            out.append((x, height - pad - (height - 2 * pad) * (value - lo) / span_y))
    return out


def _path(xy: list[tuple[float, float]]) -> str:
    """``M x y L x y ...``, broken where a y is NaN."""
    parts, pen = [], "M"
    for x, y in xy:
        if math.isnan(y):
            pen = "M"
            continue
        parts.append(f"{pen}{x:.1f} {y:.1f}")
        pen = "L"
    return " ".join(parts)


def _marks(xy: list[tuple[float, float]], pad: float) -> str:
    """Red ticks where a value was NaN or infinite; a dot on a lone finite point."""
    out = []
    for i, (x, y) in enumerate(xy):
        if math.isnan(y):
            out.append(f'<circle class="bad" cx="{x:.1f}" cy="{pad:.1f}" r="2.2"/>')
        else:
            alone = (i == 0 or math.isnan(xy[i - 1][1])) and (
                i == len(xy) - 1 or math.isnan(xy[i + 1][1])
            )
            if alone:
                out.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="1.8"/>')
    return "".join(out)


def describe(points: Points, what: str) -> str:
    """``mean from 0.01 (step 0) to 0.04 (step 30), 0.009 - 0.05`` (escaped)."""
    if not points:
        return esc(f"{what}: not recorded")
    finite = [v for _, v in points if math.isfinite(v)]
    (s0, v0), (s1, v1) = points[0], points[-1]
    text = f"{what} from {number(v0)} (step {s0}) to {number(v1)} (step {s1})"
    if finite:
        text += f", range {number(min(finite))} to {number(max(finite))}"
    bad = len(points) - len(finite)
    if bad:
        text += f", {bad} non-finite"
    return esc(text, LINE_LIMIT)


def sparkline(points: Points, what: str, width: int = 120, height: int = 26) -> str:
    """A small line of ``points`` with a tooltip saying its first, last and range."""
    label = describe(points, what)
    if not points:
        return '<span class="muted">-</span>'
    pad = 3.0
    xy = _scale(points, width, height, pad)
    last = next(((x, y) for x, y in reversed(xy) if not math.isnan(y)), None)
    end = f'<circle class="end" cx="{last[0]:.1f}" cy="{last[1]:.1f}" r="2"/>' if last else ""
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}"><title>{label}</title>'
        f'<path d="{_path(xy)}"/>{_marks(xy, pad)}{end}</svg>'
    )


def chart(points: Points, what: str, width: int = 300, height: int = 110) -> str:
    """A metric over steps: the line, its range on the left, the first and last step below."""
    label = describe(points, what)
    if not points:
        return ""
    left, bottom, pad = 46.0, 16.0, 4.0
    inner_w, inner_h = width - left, height - bottom
    xy = [(x + left, y) for x, y in _scale(points, inner_w, inner_h, pad)]
    finite = [v for _, v in points if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (math.nan, math.nan)
    if finite:
        texts = f'<text x="{left - 5}" y="{pad + 8}" class="ax end">{esc(number(hi))}</text>'
    else:
        texts = f'<text x="{left}" y="{inner_h / 2}" class="ax">no finite value</text>'
    if finite and lo != hi:
        texts += f'<text x="{left - 5}" y="{inner_h - pad}" class="ax end">{esc(number(lo))}</text>'
    texts += f'<text x="{left}" y="{height - 3}" class="ax">step {points[0][0]}</text>'
    if points[-1][0] != points[0][0]:
        texts += f'<text x="{width - 2}" y="{height - 3}" class="ax end">{points[-1][0]}</text>'

    frame = (
        f'<line class="grid" x1="{left}" y1="{pad}" x2="{width}" y2="{pad}"/>'
        f'<line class="grid" x1="{left}" y1="{inner_h - pad}" x2="{width}" y2="{inner_h - pad}"/>'
    )
    return (
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}"><title>{label}</title>{frame}{texts}'
        f'<path d="{_path(xy)}"/>{_marks(xy, pad)}</svg>'
    )
