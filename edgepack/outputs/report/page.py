"""HTML for ``report.html``: one self-contained page per target, and one across targets.

Self-contained is enforced, not just intended: the page carries a Content-Security-Policy
that allows no script and no fetch of any kind (only inline styles and inline SVG), so a
browser opening it from a CI artifact or an app repository loads nothing from anywhere. Every
value from the manifest is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem;
       padding: 0 1rem; color: #1b1b1b; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .7rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #cf222e; font-weight: 600; }
.skipped { color: #8a6d00; font-weight: 600; }
.verdict { display: inline-block; padding: .15rem .6rem; border-radius: .3rem; color: #fff; }
.verdict.pass { background: #1a7f37; } .verdict.fail { background: #cf222e; }
figure.plot { margin: 1rem 0; } figure.plot svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: .9rem; }
.missing { color: #8a6d00; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(26rem, 1fr)); gap: 1rem; }
"""


def page(title: str, subtitle: str, sections: Iterable[str]) -> str:
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<h1>{escape(title)}</h1>\n<p class="sub">{subtitle}</p>\n{body}\n</body>\n</html>\n'
    )


def section(heading: str, *parts: str) -> str:
    return f"<section>\n<h2>{escape(heading)}</h2>\n" + "\n".join(parts) + "\n</section>"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """Cells are escaped, except values wrapped in :class:`Raw` (already HTML)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    lines = []
    for row in rows:
        cells = []
        for index, cell in enumerate(row):
            text = cell.html if isinstance(cell, Raw) else escape(str(cell))
            cls = ' class="num"' if index in numeric else ""
            cells.append(f"<td{cls}>{text}</td>")
        lines.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(lines) + "\n</table>"


class Raw:
    """A cell that is already HTML (a status badge, a link)."""

    def __init__(self, html: str) -> None:
        self.html = html


def status(text: str) -> Raw:
    return Raw(f'<span class="{escape(text)}">{escape(text)}</span>')


def verdict(passed: bool) -> str:
    word = "pass" if passed else "fail"
    label = "every budget holds" if passed else "a budget is exceeded"
    return f'<span class="verdict {word}">{label}</span>'


def plot(name: str, caption: str, svg: str | None, missing: str = "") -> str:
    """A figure the browser test can find by ``data-plot``; or the reason it has no plot."""
    if svg is None:
        return f'<p class="missing" data-missing="{escape(name)}">{escape(caption)}: {escape(missing)}</p>'
    return (
        f'<figure class="plot" data-plot="{escape(name)}">\n{svg}\n'
        f"<figcaption>{escape(caption)}</figcaption>\n</figure>"
    )
