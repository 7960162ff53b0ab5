"""Results at a glance: the claims table cut down to what a newcomer reads first (each claim,
its verdict and its headline figure, with a link to the report section that shows it).

One rendering, three places that must agree (``tests/test_glance.py``): the README's results
section (between :data:`START` and :data:`END`, rewritten by the report stage), ``advgen claims``
in a terminal, and ``advgen claims --markdown`` for a pull request. The rows come from
``reports/claims.json``; the headline figure is the first clause of the claim's ``measured``
text (the figure its criterion reads; the rest stays in the report).
"""
from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from .document import md_anchor
from .io import atomic_write_text

START = "<!-- results:start (written by the report stage from reports/claims.json; do not edit) -->"
END = "<!-- results:end -->"
VERDICTS = {"supported": "supported", "not_supported": "not supported", "not_measured": "not measured"}
SUMMARY = "reports/summary.md"  # where the sections are, from the repository root
LIMIT = 160  # characters of a headline figure


class GlanceError(ValueError):
    """A claims file or a README that cannot be rendered or updated."""


def clauses(measured: str) -> list[str]:
    """``measured`` split at each ``"; "`` outside brackets (``(||w||^2=28; FGSM ...)`` stays whole)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(measured):
        depth = max(0, depth + (ch in "([") - (ch in ")]"))  # a stray closer does not open a split
        if depth <= 0 and measured.startswith("; ", i):
            out.append(measured[start:i].strip())
            start = i + 2
    return [c for c in [*out, measured[start:].strip()] if c]


def headline_figure(measured: str, limit: int = LIMIT) -> str:
    """The leading clauses of a claim's ``measured`` text that fit in ``limit`` characters (at
    least the first, cut at a word), with an ellipsis when some are left out."""
    parts = clauses(measured)
    if not parts:
        return ""
    head = parts[0]
    for c in parts[1:]:
        if len(head) + 2 + len(c) > limit:
            break
        head += "; " + c
    if len(head) > limit:  # cut at the last whole word within the limit
        cut = head[:limit]
        head = (cut if head[limit] == " " else cut.rsplit(" ", 1)[0]).rstrip(" ,;:")
    return head if head == "; ".join(parts) else head + " …"


def counts(claims: Sequence[Mapping]) -> str:
    """``19 claims: 11 supported, 8 not supported`` (verdicts with no claim left out)."""
    n = {v: sum(r["verdict"] == v for r in claims) for v in VERDICTS}
    return f"{len(claims)} claim{'' if len(claims) == 1 else 's'}: " + ", ".join(f"{k} {VERDICTS[v]}" for v, k in n.items() if k)


def _rows(claims: Sequence[Mapping]) -> list[Mapping]:
    """``claims`` checked: a non-empty list of rows with the four text fields and a known verdict."""
    keys = ("id", "claim", "measured", "verdict")
    if not isinstance(claims, list) or not claims:
        raise GlanceError(f"expected a non-empty list of claim rows, found {claims!r:.60}")
    for i, r in enumerate(claims):
        if not isinstance(r, Mapping):
            raise GlanceError(f"claims row {i}: expected an object, found {type(r).__name__}")
        missing = [k for k in keys if k not in r]
        if missing:
            raise GlanceError(f"claims row {i} ({r.get('id', '?')}) lacks {missing}; expected {list(keys)}")
        not_text = [k for k in keys if not isinstance(r[k], str)]
        if not_text:
            raise GlanceError(f"claims row {r['id']!r}: {not_text} must be text")
        if r["verdict"] not in VERDICTS:
            raise GlanceError(f"claims row {r['id']}: verdict {r['verdict']!r}; expected one of {list(VERDICTS)}")
    return list(claims)


def shown(links: Mapping[str, str], summary: str) -> dict[str, str]:
    """The entries of ``links`` (claim id -> section title) whose section is a heading of the
    Markdown report ``summary``: a claim whose section a run did not write gets no dead link."""
    headings = set(re.findall(r"^#+ (.+)$", summary, re.M))
    return {c: t for c, t in links.items() if t in headings}


def markdown(claims: Sequence[Mapping], links: Mapping[str, str], profile: str = "default",
             summary: str = SUMMARY) -> str:
    """The Markdown block: the counts, then one row per claim; the id links to the section of
    ``summary`` that ``links`` names for it (claim id -> section title). ``profile``: the one
    the figures come from (params.yaml's ``profile`` when the report ran)."""
    rows = _rows(claims)
    lines = [f"{counts(rows)}. Every figure is from the `{profile}` profile's run committed with this README; "
             f"the criteria were fixed before it ran. Each id links to the report section with its experiment.", "",
             "| claim | what the lecture says | verdict | headline figure |", "|---|---|---|---|"]
    for r in rows:
        cid = f"[{r['id']}]({summary}#{md_anchor(links[r['id']])})" if r["id"] in links else r["id"]
        verdict = f"**{VERDICTS[r['verdict']]}**" if r["verdict"] == "supported" else VERDICTS[r["verdict"]]
        if r.get("seeds"):  # judged over seeds (claims.SEED_RULE): "seeds 0 / 1 / 2: ..."
            verdict += f" ({r['seeds'].split(':', 1)[0].count('/') + 1} seeds)"
        cells = [cid, r["claim"], verdict, headline_figure(r["measured"])]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def text(claims: Sequence[Mapping], width: int = 100) -> str:
    """The same rows for a terminal: id, verdict, headline figure, and the claim wrapped below."""
    rows = _rows(claims)  # non-empty
    idw = max(len(r["id"]) for r in rows)
    vw = max(len(VERDICTS[r["verdict"]]) for r in rows)
    indent = " " * (idw + 2)
    out = [counts(rows), ""]
    for r in rows:
        out.append(f"{r['id']:<{idw}}  {VERDICTS[r['verdict']]:<{vw}}  {headline_figure(r['measured'])}")
        out += textwrap.wrap(r["claim"], max(width - len(indent), 20), initial_indent=indent, subsequent_indent=indent)
    return "\n".join(out) + "\n"


def section(readme: str, block: str, where: str = "README.md") -> str:
    """``readme`` with the text between :data:`START` and :data:`END` replaced by ``block``."""
    if readme.count(START) != 1 or readme.count(END) != 1 or readme.index(START) > readme.index(END):
        raise GlanceError(f"{where}: expected one '{START}' line, then one '{END}' line")
    head, rest = readme.split(START, 1)
    return head + START + "\n" + block + END + rest.split(END, 1)[1]


def current_block(readme: str, where: str = "README.md") -> str:
    """The block between the markers of ``readme``."""
    section(readme, "", where)  # checks the markers
    return readme.split(START, 1)[1].split(END, 1)[0].removeprefix("\n")


def update_readme(path: str | Path, claims: Sequence[Mapping], links: Mapping[str, str],
                  profile: str = "default") -> bool:
    """Rewrite the results section of the README at ``path`` (atomically; untouched when it is
    already current). Returns whether it changed."""
    path = Path(path)
    old = path.read_text()
    new = section(old, markdown(claims, links, profile), str(path))
    if new == old:
        return False
    atomic_write_text(path, new)
    return True
