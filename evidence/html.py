"""The HTML the evidence documents (the device report, the PSUR) are made of: escaped text,
tables, figures, sections, and the stylesheet with its printed page footer.

Each document is one self-contained file: the style is inline, and so is every figure, as a
base64 PNG.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence


def escape(value: object) -> str:
    """``value`` as HTML text, quotes included, so it may also stand in an attribute.

    >>> escape('<b> & "x"')
    '&lt;b&gt; &amp; &quot;x&quot;'
    """
    return html.escape(str(value))


def percent(value: float | None) -> str:
    """A proportion as the documents show it, ``-`` for none.

    >>> percent(0.9), percent(None)
    ('90.0%', '-')
    """
    return "-" if value is None else f"{value:.1%}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], css: str = "") -> str:
    """A table of ``rows``, whose cells are HTML already (escape text first); a table with
    no row says "none in this window"."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="none">none in this window</td></tr>'
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def figure(figure_id: str, png: str | None, caption: str) -> str:
    """The base64 PNG ``png`` inline with its caption, or a line saying there was no data."""
    if png is None:
        return (
            f'<p class="none" data-figure-missing="{escape(figure_id)}">'
            f"No data for: {escape(caption)}</p>"
        )
    return (
        f'<figure id="{escape(figure_id)}" data-figure="{escape(figure_id)}">'
        f'<img alt="{escape(caption)}" src="data:image/png;base64,{png}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def section(section_id: str, heading: str, body: str) -> str:
    """A document section: its heading, then ``body`` (HTML)."""
    return f'<section id="{section_id}"><h2>{escape(heading)}</h2>{body}</section>'


STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10.5pt; color: #222;
       margin: 24px auto; max-width: 1100px; }
h1 { font-size: 18pt; margin-bottom: 2px; } h2 { border-bottom: 2px solid #1f6fb2;
     padding-bottom: 3px; margin-top: 28px; font-size: 14pt; } h3 { font-size: 11pt; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 9pt; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #eef3f8; } table.facts th { display: none; }
table.facts td:first-child { width: 180px; font-weight: bold; }
.design { background: #f6f6f6; border-left: 4px solid #e6a23c; padding: 4px 8px; }
.note { color: #555; font-size: 9pt; } .none { color: #888; font-style: italic; }
.bad { color: #c0392b; font-weight: bold; } .ok { color: #1e7b34; } .neutral { color: #555; }
.status-open { color: #c0392b; font-weight: bold; } .status-acknowledged { color: #b7791f; }
.status-resolved { color: #1e7b34; }
figure { margin: 10px 0; page-break-inside: avoid; } figure img { max-width: 100%; }
figcaption { font-size: 9pt; color: #555; } ul.findings li { margin: 3px 0; }
@page { size: A4; margin: 14mm 14mm 16mm;
        @bottom-right { content: "page " counter(page) " of " counter(pages); font-size: 7.5pt;
                        color: #555; } }
@media print { body { margin: 0; max-width: none; } }
"""
"""The documents' stylesheet, on screen and printed (A4, "page X of Y" in the footer)."""


def page_footer(document: str) -> str:
    """CSS printing ``document`` (an id) in every page's footer, beside "page X of Y"."""
    # A CSS escape for anything but plain characters: no quote or "</style>" can end it.
    quoted = "".join(
        c if c.isascii() and (c.isalnum() or c in "-_. ") else f"\\{ord(c):x} " for c in document
    )
    return f'@page {{ @bottom-left {{ content: "{quoted}"; font-size: 7.5pt; color: #555; }} }}'


def document(title: str, document_id: str, note: str, body: str) -> str:
    """One self-contained HTML document: ``title`` heads it, ``note`` (HTML) opens it, and
    ``document_id`` is printed in every page's footer."""
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{STYLE}{page_footer(document_id)}</style>"
        f"</head><body><h1>{escape(title)}</h1><p class=note>{note}</p>{body}</body></html>"
    )
