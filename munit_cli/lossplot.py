"""The loss plot of `munit report`: SVG drawn here, one `<path data-term=NAME>` per loss term.

Its log-scale and smoothing toggles swap in geometry computed here too (the small inline script
holds no maths), so the page reads the same without scripts. Its CSS is in the report's STYLE.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from html import escape
from typing import Any

MAX_POINTS = 500  # per curve: more than the plot has pixels for; longer logs are averaged in buckets
SMOOTHING = 0.8  # weight of the debiased exponential moving average behind the smoothing toggle
# Tableau's ten colours, then the same with dashes: distinct on white for up to twenty terms
COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")

WIDTH, HEIGHT = 960, 400
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 16, 40


def nice_step(span: float, count: int = 6) -> float:
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def linear_ticks(lo: float, hi: float) -> list[float]:
    step = nice_step(hi - lo)
    first = math.ceil(lo / step - 1e-9)
    return [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks in log10 space: the powers of ten, and 2x and 5x when fewer than four powers fit."""
    ticks = [float(k) for k in range(math.ceil(lo), math.floor(hi) + 1)]
    if len(ticks) < 4:
        ticks = sorted(
            t for k in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)
            if lo <= (t := k + math.log10(m)) <= hi
        )  # fmt: skip
    return ticks


def short_number(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def smoothed(values: list[float | None]) -> list[float | None]:
    """TensorBoard's smoothing: a debiased exponential moving average; gaps stay gaps."""
    out: list[float | None] = []
    mean, weight = 0.0, 0.0
    for v in values:
        if v is not None:
            mean = SMOOTHING * mean + (1 - SMOOTHING) * v
            weight = SMOOTHING * weight + (1 - SMOOTHING)
        out.append(None if v is None else mean / weight)
    return out


def bucketed(points: list[tuple[int, float | None]]) -> list[tuple[int, float | None]]:
    """At most MAX_POINTS points: consecutive points averaged, each bucket at its last step."""
    if len(points) <= MAX_POINTS:
        return points
    out = []
    for i in range(MAX_POINTS):
        bucket = points[i * len(points) // MAX_POINTS : (i + 1) * len(points) // MAX_POINTS]
        finite = [v for _, v in bucket if v is not None]
        out.append((bucket[-1][0], sum(finite) / len(finite) if finite else None))
    return out


def padded(lo: float, hi: float, fraction: float = 0.04) -> tuple[float, float]:
    if hi - lo < 1e-12:
        return lo - 1, hi + 1
    pad = (hi - lo) * fraction
    return lo - pad, hi + pad


def path_data(points: Iterable[tuple[float, float | None]]) -> str:
    """SVG path through the points; a None starts a new segment (a gap), and a lone point gets a
    zero-length segment that the round line caps draw as a dot."""
    segments: list[list[str]] = [[]]
    for x, y in points:
        if y is None:
            segments.append([])
        else:
            segments[-1].append(f"{x:.1f} {y:.1f}")
    return "".join("M" + "L".join(seg) + ("h0" if len(seg) == 1 else "") for seg in segments if seg)


def variant(series: dict[str, list[tuple[int, float | None]]], x_of, log: bool, smooth: bool) -> dict[str, Any]:
    """The y ticks (SVG markup) and one path per term for one setting of the two toggles."""
    values: dict[str, list[float | None]] = {}
    for term, points in series.items():
        ys = [v for _, v in points]
        if log:
            ys = [math.log10(v) if v is not None and v > 0 else None for v in ys]
        values[term] = smoothed(ys) if smooth else ys
    finite = [v for ys in values.values() for v in ys if v is not None]
    lo, hi = padded(min(finite), max(finite)) if finite else (0.0, 1.0)

    def y_of(v: float) -> float:
        return TOP + (hi - v) / (hi - lo) * (HEIGHT - TOP - BOTTOM)

    ticks = log_ticks(lo, hi) if log else linear_ticks(lo, hi)
    tick_svg = "".join(
        f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y_of(t):.1f}" y2="{y_of(t):.1f}"/>'
        f'<text class="tick" x="{LEFT - 6}" y="{y_of(t) + 4:.1f}" text-anchor="end">'
        f"{escape(short_number(10**t if log else t))}</text>"
        for t in ticks
    )
    paths = {
        term: path_data((x_of(step), None if v is None else y_of(v)) for (step, _), v in zip(series[term], ys))
        for term, ys in values.items()
    }
    return {"ticks": tick_svg, "paths": paths}


def loss_plot(series: dict[str, list[tuple[int, float | None]]]) -> str:
    """The plot of each loss term's (step, value) points, as `report.loss_series` reads them."""
    series = {term: bucketed(points) for term, points in series.items()}
    if not series:
        return '<p class="empty">No loss terms in metrics.jsonl.</p>'
    steps = [step for points in series.values() for step, _ in points]
    x_lo, x_hi = (min(steps), max(steps)) if min(steps) < max(steps) else padded(min(steps), max(steps))

    def x_of(step: float) -> float:
        return LEFT + (step - x_lo) / (x_hi - x_lo) * (WIDTH - LEFT - RIGHT)

    positive = all(v is None or v > 0 for points in series.values() for _, v in points)
    variants = {
        f"{'log' if log else 'lin'}{'-smooth' if smooth else ''}": variant(series, x_of, log, smooth)
        for log in (False, True)
        for smooth in (False, True)
    }
    shown = variants["log" if positive else "lin"]
    x_ticks = "".join(
        f'<line class="grid" x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>'
        f'<text class="tick" x="{x_of(t):.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">{short_number(t)}</text>'
        for t in linear_ticks(x_lo, x_hi)
    )
    curves, legend = [], []
    for i, term in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        dash = ' stroke-dasharray="6 3"' if i >= len(COLOURS) else ""
        name = escape(term)
        curves.append(
            f'<path class="curve" data-term="{name}" d="{shown["paths"][term]}" stroke="{colour}"{dash}>'
            f"<title>{name}</title></path>"
        )
        last = next((v for _, v in reversed(series[term]) if v is not None), None)
        legend.append(
            f'<button type="button" class="term" data-term="{name}" aria-pressed="true">'
            f'<span class="swatch" style="background:{colour}"></span>{name}'
            f'<span class="last">{"-" if last is None else f"{last:.4g}"}</span></button>'
        )
    data = json.dumps(variants).replace("<", "\\u003c")  # no '</script>' inside the script element
    return f"""
<div class="controls">
  <label><input type="checkbox" id="log-scale"{" checked" if positive else ""}> log scale</label>
  <label><input type="checkbox" id="smooth"> smoothing</label>
</div>
<svg id="loss-plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="loss curves by step">
  <g id="x-ticks">{x_ticks}</g>
  <g id="y-ticks">{shown["ticks"]}</g>
  <rect class="frame" x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}"/>
  <text class="axis-label" x="{(WIDTH + LEFT) / 2}" y="{HEIGHT - 4}" text-anchor="middle">step</text>
  {"".join(curves)}
</svg>
<div class="legend">{"".join(legend)}</div>
<script type="application/json" id="plot-data">{data}</script>
<script>{PLOT_SCRIPT}</script>"""


PLOT_SCRIPT = """
(() => {
  const variants = JSON.parse(document.getElementById('plot-data').textContent);
  const log = document.getElementById('log-scale'), smooth = document.getElementById('smooth');
  const curves = document.querySelectorAll('#loss-plot path[data-term]');
  // the toggles are kept in the address (#log,smooth), so a reload during training keeps them
  const saved = location.hash.slice(1).split(',');
  if (saved.includes('lin') || saved.includes('log')) log.checked = saved.includes('log');
  smooth.checked = saved.includes('smooth');
  function draw() {
    const shown = variants[(log.checked ? 'log' : 'lin') + (smooth.checked ? '-smooth' : '')];
    document.getElementById('y-ticks').innerHTML = shown.ticks;
    curves.forEach(c => c.setAttribute('d', shown.paths[c.dataset.term]));
    location.replace('#' + (log.checked ? 'log' : 'lin') + (smooth.checked ? ',smooth' : ''));
  }
  log.addEventListener('change', draw);
  smooth.addEventListener('change', draw);
  if (location.hash) draw();
  document.querySelectorAll('button.term').forEach((button, i) => button.addEventListener('click', () => {
    const on = button.getAttribute('aria-pressed') !== 'true';
    button.setAttribute('aria-pressed', String(on));
    curves[i].classList.toggle('hidden', !on);
  }));
})();
"""
