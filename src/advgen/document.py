"""A small report document, rendered to Markdown and to a static, self-contained HTML page.

The report is built once as a list of :class:`Section` objects, each a title and a list of
blocks (:class:`Paragraph`, :class:`Table`, :class:`Image`, :class:`Bullets`), and rendered
by :func:`to_markdown` and :func:`to_html`.

Escaping is the renderers' job, never the caller's: every string a block holds is plain text
(it may come from data: model names, claim text, check details) and :func:`to_html` passes all
of it through :func:`html.escape`. There is no block type that carries raw HTML. Paragraphs
and bullets may use two bits of inline Markdown, ```code``` and ``**bold**``: the HTML
renderer escapes the text first and only then turns those markers into ``<code>`` and
``<strong>``, so they cannot smuggle markup in. Table cells are shown as they are.

The page has no JavaScript and no external resources: the CSS is in a ``<style>`` block, a
Content-Security-Policy forbids scripts, and images are relative paths (the page is written
next to them, in ``reports/``). Rendering is deterministic: no timestamps.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from urllib.parse import quote

__all__ = ["Bullets", "Cell", "Image", "Paragraph", "Section", "Table", "md_anchor", "slug", "to_html", "to_markdown"]


@dataclass(frozen=True)
class Cell:
    """A table cell with presentation: ``cls`` is a CSS class of the HTML cell (``fail``,
    ``pass``, ``supported``, ``not_supported``, ``not_measured``...); ``strong`` makes it
    bold in both renderings; ``link``, the title of a section of the same document, makes
    the text a link to that section (``[text](#anchor)`` in Markdown, with the anchor a
    Markdown viewer gives the heading, :func:`md_anchor`; ``<a href="#sec-...">`` in HTML,
    the id :func:`to_html` gives the first section of that title, :func:`slug`)."""

    text: object
    cls: str | None = None
    strong: bool = False
    link: str | None = None


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    """``rows`` hold strings, numbers or :class:`Cell`; ``id`` becomes the HTML table's id."""

    header: list[str]
    rows: list[list[object]]
    id: str | None = None


@dataclass(frozen=True)
class Image:
    """A PNG ``path`` relative to the folder the rendered files live in (``reports/``)."""

    path: str
    caption: str


Block = Paragraph | Bullets | Table | Image


@dataclass
class Section:
    """A heading (``level`` 2 or 3) and its blocks."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


# ---------------------------------------------------------------------------------------------
# Markdown


def md_anchor(title: str) -> str:
    """The anchor a Markdown viewer (GitHub's rule) gives a heading ``title``: lower case,
    punctuation other than ``-`` and ``_`` dropped, each space a ``-``."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _md_cell(c: object) -> str:
    text = str(c.text if isinstance(c, Cell) else c)
    if isinstance(c, Cell) and c.strong:
        text = f"**{text}**"
    if isinstance(c, Cell) and c.link is not None:
        text = "[" + text.replace("[", "\\[").replace("]", "\\]") + f"](#{md_anchor(c.link)})"
    return text.replace("|", "\\|")


def _md_table(t: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def _md_block(b: Block) -> str:
    if isinstance(b, Paragraph):
        return b.text
    if isinstance(b, Bullets):
        return "\n".join(f"- {i}" for i in b.items)
    if isinstance(b, Table):
        return _md_table(b)
    if isinstance(b, Image):
        alt = b.caption.replace("[", "\\[").replace("]", "\\]")
        return f"![{alt}]({quote(b.path)})"
    raise TypeError(f"unknown block {type(b).__name__}")


def to_markdown(title: str, sections: list[Section]) -> str:
    """The Markdown rendering: ``# title``, then each section's heading and blocks."""
    parts = [f"# {title}", ""]
    for s in sections:
        parts += ["#" * s.level + " " + s.title, ""]
        for b in s.blocks:
            parts += [_md_block(b), ""]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# HTML


def esc(value: object) -> str:
    """HTML-escape any value (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _inline(text: str) -> str:
    """Escape ``text``, then turn ```code``` and ``**bold**`` into tags (after escaping)."""
    out = _CODE.sub(r"<code>\1</code>", esc(text))
    return _BOLD.sub(r"<strong>\1</strong>", out)


_NUMERIC = re.compile(r"^[-+]?[\d.,]+%?( \[[-\d., ]+\])?$")
_CLASS = re.compile(r"[^A-Za-z0-9_-]")


def _attr_class(*classes: str | None) -> str:
    names = [_CLASS.sub("_", c) for c in classes if c]
    return f' class="{esc(" ".join(names))}"' if names else ""


def _html_cell(c: object, tag: str = "td") -> str:
    cell = c if isinstance(c, Cell) else Cell(c)
    text = _CODE.sub(r"<code>\1</code>", esc(cell.text))  # `name` as in Markdown (claims cells name stages)
    if cell.strong:
        text = f"<strong>{text}</strong>"
    if cell.link is not None:
        text = f'<a href="#{esc(slug(cell.link))}">{text}</a>'
    numeric = "num" if tag == "td" and _NUMERIC.match(str(cell.text)) else None
    return f"<{tag}{_attr_class(cell.cls, numeric)}>{text}</{tag}>"


def _html_table(t: Table) -> str:
    ident = f' id="{esc(_CLASS.sub("_", t.id))}"' if t.id else ""
    head = "<tr>" + "".join(_html_cell(h, "th") for h in t.header) + "</tr>"
    body = "\n".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in t.rows)
    return f'<div class="scroll"><table{ident}>\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table></div>'


def _html_block(b: Block) -> str:
    if isinstance(b, Paragraph):
        return f"<p>{_inline(b.text)}</p>"
    if isinstance(b, Bullets):
        return "<ul>\n" + "\n".join(f"<li>{_inline(i)}</li>" for i in b.items) + "\n</ul>"
    if isinstance(b, Table):
        return _html_table(b)
    if isinstance(b, Image):
        return (f'<figure><img src="{esc(quote(b.path))}" alt="{esc(b.caption)}">'
                f"<figcaption>{esc(b.caption)}</figcaption></figure>")
    raise TypeError(f"unknown block {type(b).__name__}")


def slug(text: str) -> str:
    """A section's HTML id: ``sec-`` and ``[a-z0-9-]`` only (never a table's id)."""
    return "sec-" + (re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section")


CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1c1e21; background: #fff; margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.9rem; margin: 0.5rem 0 1rem; }
h2 { font-size: 1.4rem; margin: 2.2rem 0 0.6rem; border-bottom: 2px solid #e4e6eb; padding-bottom: 0.2rem; }
h3 { font-size: 1.1rem; margin: 1.6rem 0 0.5rem; }
nav ul { columns: 3; padding-left: 1.2rem; margin: 0; }
code { font: 0.9em ui-monospace, "DejaVu Sans Mono", monospace; background: #f0f2f5; padding: 0 0.2em;
       border-radius: 3px; }
.scroll { overflow-x: auto; margin: 0.6rem 0 1rem; }
table { border-collapse: collapse; font-size: 0.86rem; }
th, td { border: 1px solid #d0d4da; padding: 0.25rem 0.5rem; vertical-align: top; text-align: left; }
thead th { background: #f0f2f5; position: sticky; top: 0; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.pass, td.supported { background: #e6f4ea !important; color: #1e6b34; }
td.fail, td.not_supported { background: #fde7e9 !important; color: #a4161a; font-weight: 600; }
td.not_measured { background: #f1f1f1 !important; color: #6b6f76; }
table#claims td:nth-child(n+2) { min-width: 9rem; }
figure { display: inline-block; margin: 0.5rem 1rem 1rem 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #e4e6eb; }
figcaption { font-size: 0.8rem; color: #555; }
"""

# No scripts at all; images and styles only from the page itself.
CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def to_html(title: str, sections: list[Section]) -> str:
    """The HTML page: static, self-contained, no JavaScript; every text is escaped."""
    ids: dict[str, int] = {}

    def anchor(s: Section) -> str:
        base = slug(s.title)
        ids[base] = ids.get(base, 0) + 1
        return base if ids[base] == 1 else f"{base}-{ids[base]}"

    anchors = [anchor(s) for s in sections]
    toc = "\n".join(f'<li><a href="#{a}">{esc(s.title)}</a></li>' for s, a in zip(sections, anchors) if s.level == 2)
    body = []
    for s, a in zip(sections, anchors):
        level = min(max(s.level, 2), 6)
        body.append(f'<section id="{a}">\n<h{level}>{esc(s.title)}</h{level}>')
        body += [_html_block(b) for b in s.blocks]
        body.append("</section>")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{esc(title)}</h1>",
        f"<nav><ul>\n{toc}\n</ul></nav>",
        *body,
        "</main>",
        "</body>",
        "</html>",
        "",
    ])
