"""A results chart as a standalone SVG (no plotting dependency): one bar per method, grouped
by modality, with the standard deviation over seeds as an error bar."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

_COLOURS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3",
            "#8C8C8C", "#CCB974", "#64B5CD"]


def bar_chart_svg(summary: list[dict[str, Any]], probe: str = "linear", metric: str = "accuracy",
                  title: str = "") -> str:
    """SVG text of ``mean`` (in %) per (modality, method) for one probe metric."""
    entries = [e for e in summary if e["probe"] == probe and e["metric"] == metric]
    modalities = list(dict.fromkeys(e["modality"] for e in entries))
    methods = list(dict.fromkeys(e["method"] for e in entries))
    colour = {m: _COLOURS[i % len(_COLOURS)] for i, m in enumerate(methods)}
    bar, gap, left, top, height = 22, 18, 50, 40, 220
    group_width = {mod: bar * sum(e["modality"] == mod for e in entries) for mod in modalities}
    width = left + sum(group_width.values()) + gap * (len(modalities) + 1) + 140
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + height + 50}" '
             'font-family="sans-serif" font-size="11">',
             f'<text x="{left}" y="20" font-size="13">{escape(title or f"{probe} {metric} (%)")}</text>']
    for tick in range(0, 101, 20):
        y = top + height * (1 - tick / 100)
        parts.append(f'<line x1="{left}" x2="{width - 140}" y1="{y}" y2="{y}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{tick}</text>')
    x = left + gap
    for mod in modalities:
        start = x
        for e in (e for e in entries if e["modality"] == mod):
            h, err = height * e["mean"], height * e["std"]
            y = top + height - h
            parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar - 2}" height="{h:.1f}" '
                         f'fill="{colour[e["method"]]}"><title>{escape(mod)} {escape(e["method"])}: '
                         f'{100 * e["mean"]:.1f} ± {100 * e["std"]:.1f}</title></rect>')
            if err > 0:
                cx = x + (bar - 2) / 2
                parts.append(f'<line x1="{cx}" x2="{cx}" y1="{y - err:.1f}" y2="{y + err:.1f}" '
                             'stroke="black"/>')
            x += bar
        parts.append(f'<text x="{(start + x) / 2}" y="{top + height + 16}" text-anchor="middle">'
                     f'{escape(mod)}</text>')
        x += gap
    for i, m in enumerate(methods):
        y = top + 14 * i
        parts.append(f'<rect x="{width - 130}" y="{y}" width="10" height="10" fill="{colour[m]}"/>'
                     f'<text x="{width - 115}" y="{y + 9}">{escape(m)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def write_bar_chart(summary: list[dict[str, Any]], path: str | Path, **kwargs: Any) -> Path:
    path = Path(path)
    path.write_text(bar_chart_svg(summary, **kwargs))
    return path
