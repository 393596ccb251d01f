"""Charts of the benchmark report, as hand-written SVG (no plotting library): horizontal bars
for the sequential figures, lines for the async ones against calls in flight.

Drawn by :func:`benchmarks.report.charts` from the same results as the tables, so a chart
and its table cannot disagree. The output depends on the data alone (no dates, no random
ids): re-drawing unchanged results gives the same bytes.
"""

# ruff: noqa: E501  (SVG element templates read better on one line each)

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

WIDTH = 720
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
#: One colour per contender, the same in every chart; chatcore stands out.
COLOURS = {
    "chatcore": "#3f51b5",
    "bare": "#9e9e9e",
    "openai": "#2e7d32",
    "litellm": "#ef6c00",
    "other": "#795548",
}


def colour_of(label: str) -> str:
    low = label.lower()
    if "chatcore" in low:
        return COLOURS["chatcore"]
    if "openai" in low:
        return COLOURS["openai"]
    if "litellm" in low:
        return COLOURS["litellm"]
    if "bare" in low or low.startswith(("requests", "http.client", "aiohttp")):
        return COLOURS["bare"]
    return COLOURS["other"]


def _num(value: float) -> str:
    """A figure as the tables print it: thousands separated, few digits."""
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def _svg(height: int, title: str, body: list[str]) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
            f'width="{WIDTH}" height="{height}" role="img" font-family="{FONT}" font-size="13">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
            f'<text x="16" y="26" font-size="15" font-weight="600" fill="#212121">{escape(title)}</text>',
            *body,
            "</svg>",
            "",
        ]
    )


def bar_chart(
    title: str,
    unit: str,
    rows: Sequence[tuple[str, float]],
    baseline: str | None = None,
    note: str = "",
) -> str:
    """Horizontal bars, one per ``(label, value)``, longest = largest value; each bar is
    labelled with its value in ``unit`` and, with a ``baseline`` label, its ratio to it."""
    label_w, top, bar_h, gap = 250, 44, 22, 10
    plot_w = WIDTH - label_w - 130
    largest = max(value for _, value in rows) or 1.0
    base = dict(rows).get(baseline) if baseline else None
    body: list[str] = []
    if note:
        body.append(f'<text x="16" y="{top - 2}" fill="#616161">{escape(note)}</text>')
        top += 14
    for i, (label, value) in enumerate(rows):
        y = top + i * (bar_h + gap)
        width = max(1.0, plot_w * value / largest)
        text = f"{_num(value)} {unit}"
        if base:
            text += f" ({value / base:.2f}x)"
        body += [
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" fill="#212121">{escape(label)}</text>',
            f'<rect class="bar" data-label="{escape(label)}" data-value="{value:.6g}" x="{label_w}" '
            f'y="{y}" width="{width:.2f}" height="{bar_h}" rx="3" fill="{colour_of(label)}"/>',
            f'<text x="{label_w + width + 6:.2f}" y="{y + 15}" fill="#424242">{escape(text)}</text>',
        ]
    height = top + len(rows) * (bar_h + gap) + 8
    return _svg(height, title, body)


def line_chart(
    title: str,
    x_label: str,
    y_label: str,
    series: dict[str, list[tuple[float, float]]],
    note: str = "",
) -> str:
    """One line per series over a logarithmic x axis (calls in flight: 1, 64, 256, 1024)
    and a linear y axis from 0; every point is marked and labelled with its value."""
    left, right, top, bottom = 78, 200, 58, 56
    height = 380
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    xs = sorted({x for points in series.values() for x, _ in points})
    ys = [y for points in series.values() for _, y in points]
    y_max = _nice_ceiling(max(ys) if ys else 1.0)
    lo, hi = math.log2(xs[0]), math.log2(xs[-1])
    span = (hi - lo) or 1.0

    def px(x: float) -> float:
        return left + plot_w * (math.log2(x) - lo) / span

    def py(y: float) -> float:
        return top + plot_h * (1 - y / y_max)

    body: list[str] = []
    if note:
        body.append(f'<text x="16" y="44" fill="#616161">{escape(note)}</text>')
    for i in range(5):  # horizontal grid and y ticks
        y_value = y_max * i / 4
        y = py(y_value)
        body += [
            f'<line x1="{left}" y1="{y:.2f}" x2="{left + plot_w}" y2="{y:.2f}" stroke="#e0e0e0"/>',
            f'<text x="{left - 6}" y="{y + 4:.2f}" text-anchor="end" fill="#616161">{_num(y_value)}</text>',
        ]
    for x in xs:
        body.append(
            f'<text x="{px(x):.2f}" y="{top + plot_h + 18}" text-anchor="middle" fill="#616161">{x:g}</text>'
        )
    body += [
        f'<text x="{left + plot_w / 2:.2f}" y="{height - 14}" text-anchor="middle" fill="#424242">{escape(x_label)}</text>',
        f'<text transform="translate(18 {top + plot_h / 2:.2f}) rotate(-90)" text-anchor="middle" '
        f'fill="#424242">{escape(y_label)}</text>',
    ]
    for n, (full_name, points) in enumerate(series.items()):
        colour = colour_of(full_name)
        name = full_name.replace(" (OpenAI SDK)", "")
        path = " ".join(f"{px(x):.2f},{py(y):.2f}" for x, y in sorted(points))
        body.append(
            f'<polyline class="series" data-label="{escape(full_name)}" points="{path}" fill="none" '
            f'stroke="{colour}" stroke-width="2.5"/>'
        )
        for x, y in sorted(points):
            body += [
                f'<circle class="point" data-label="{escape(full_name)}" data-x="{x:g}" data-value="{y:.6g}" '
                f'cx="{px(x):.2f}" cy="{py(y):.2f}" r="4" fill="{colour}"/>',
                f'<text x="{px(x) + 6:.2f}" y="{py(y) - 6:.2f}" font-size="11" fill="{colour}">{_num(y)}</text>',
            ]
        legend_y = top + 8 + n * 22
        body += [
            f'<rect x="{left + plot_w + 16}" y="{legend_y - 10}" width="14" height="4" fill="{colour}"/>',
            f'<text x="{left + plot_w + 36}" y="{legend_y - 4}" fill="#212121">{escape(name)}</text>',
        ]
    return _svg(height, title, body)


def _nice_ceiling(value: float) -> float:
    """The next round figure at or above ``value`` (1, 2, 2.5, 5 x a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return float(step * power)
    return 10.0 * power
