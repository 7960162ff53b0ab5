"""Results at a glance: the README's results section, the report's claims table and `advgen
claims` show the same verdicts and figures, all from reports/claims.json."""
from __future__ import annotations

import io
import json
import re

import pytest
import yaml

from advgen import areas, glance
from advgen.cli import main
from advgen.report import claim_links
from tests.conftest import ROOT

CLAIMS = json.loads((ROOT / "reports/claims.json").read_text())


def test_clauses_split_outside_brackets_only():
    assert glance.clauses("a 1; b (c; d) [e; f]; g") == ["a 1", "b (c; d) [e; f]", "g"]
    assert glance.clauses("x (unclosed; y") == ["x (unclosed; y"]
    assert glance.clauses("") == []


def test_headline_figure_keeps_whole_clauses_that_fit():
    assert glance.headline_figure("acc 50%; p = 0", limit=40) == "acc 50%; p = 0"
    assert glance.headline_figure("acc 50%; p = 0; more words here", limit=16) == "acc 50%; p = 0 …"
    assert glance.headline_figure("acc 50%; p = 0", limit=10) == "acc 50% …"  # the first clause always
    long = "word " * 30
    cut = glance.headline_figure(long.strip(), limit=20)
    assert cut == "word word word word …" and len(cut) <= 22
    assert glance.headline_figure("") == ""


def _readme_block() -> str:
    return glance.current_block((ROOT / "README.md").read_text())


def _links() -> dict[str, str]:
    return glance.shown(claim_links(areas.report_parts()), (ROOT / "reports/summary.md").read_text())


def test_readme_results_section_is_the_committed_claims():
    """Rewritten by the report stage; `advgen claims --readme` after checking out other results."""
    profile = yaml.safe_load((ROOT / "params.yaml").read_text())["profile"]
    expected = glance.markdown(CLAIMS, _links(), profile)
    assert len(_links()) == 20 and "C3" not in _links()  # every claim but the worked example has a section
    assert _readme_block() == expected, "README.md's results section is stale: run `advgen claims --readme`"


def test_readme_report_and_cli_agree(capsys):
    block = _readme_block()
    readme = {m[0]: (m[1], m[2]) for m in re.findall(r"^\| \[?(C\d+[ab]?)\]?\S* \| .*? \| \**([a-z ]+?)\**(?: \(\d+ seeds\))? \| (.*) \|$",
                                                     block, re.M)}
    summary = (ROOT / "reports/summary.md").read_text()
    report = dict(re.findall(r"^\| (C\d+[ab]?) \| .* \| \*\*([a-z_]+)\*\* \| [^|]* \|$", summary, re.M))
    for r in CLAIMS:  # the report's row shows the same measured text the figure is cut from
        assert f"| {r['measured'].replace('|', chr(92) + '|')} |" in summary, r["id"]
    main(["claims"])
    out = capsys.readouterr().out
    cli = dict(re.findall(r"^(C\d+[ab]?) +(supported|not supported|not measured)  ", out, re.M))
    figures = dict(re.findall(r"^(C\d+[ab]?) +(?:supported|not supported|not measured) +(.*)$", out, re.M))
    ids = [r["id"] for r in CLAIMS]
    assert list(readme) == ids and list(report) == ids and list(cli) == ids and len(ids) == 21
    for r in CLAIMS:
        shown = glance.VERDICTS[r["verdict"]]
        assert readme[r["id"]][0] == shown == cli[r["id"]] and report[r["id"]] == r["verdict"], r["id"]
        assert readme[r["id"]][1].replace("\\|", "|") == glance.headline_figure(r["measured"])
        assert figures[r["id"]] == glance.headline_figure(r["measured"])
    assert glance.counts(CLAIMS) in block
    seeded = {r["id"] for r in CLAIMS if r["seeds"]}  # judged over seeds: the README says so
    assert seeded == {"C9", "C10"} and all(re.search(rf"^\| \[{c}\].* \(3 seeds\) \|", block, re.M) for c in seeded)


def test_cli_markdown_is_the_readme_block(capsys):
    main(["claims", "--markdown"])
    assert capsys.readouterr().out == _readme_block()


def test_update_readme_rewrites_only_between_the_markers(tmp_path):
    links = {"C1": "Forged inputs (C1, C2)"}
    path = tmp_path / "README.md"
    path.write_text(f"# x\n\nintro\n{glance.START}\nold\n{glance.END}\n\nrest\n")
    assert glance.update_readme(path, CLAIMS[:2], links)
    text = path.read_text()
    assert text.startswith(f"# x\n\nintro\n{glance.START}\n2 claims: ") and text.endswith(f"{glance.END}\n\nrest\n")
    assert "[C1](reports/summary.md#forged-inputs-c1-c2)" in text and "| C2 |" in text and "old" not in text
    assert not glance.update_readme(path, CLAIMS[:2], links)  # current: untouched
    path.write_text("# no markers\n")
    with pytest.raises(glance.GlanceError, match="README.md: expected one '<!-- results:start"):
        glance.update_readme(path, CLAIMS, links)
    path.write_text(f"{glance.END}\n{glance.START}\n")
    with pytest.raises(glance.GlanceError, match="expected one"):
        glance.update_readme(path, CLAIMS, links)


@pytest.mark.parametrize("claims, needle", [
    ([], "expected a non-empty list of claim rows"),
    ({"C1": 1}, "expected a non-empty list of claim rows"),
    (["C1"], "claims row 0: expected an object, found str"),
    ([{"id": "C1", "claim": "x", "measured": 0.5, "verdict": "supported"}], "claims row 'C1': ['measured'] must be text"),
    ([{"id": "C1", "claim": "x", "measured": "y"}], "claims row 0 (C1) lacks ['verdict']"),
])
@pytest.mark.parametrize("form", [[], ["--markdown"]])
def test_malformed_claims_never_give_a_traceback(tmp_path, capsys, claims, needle, form):
    bad = tmp_path / "claims.json"
    bad.write_text(json.dumps(claims))
    with pytest.raises(SystemExit) as exc:
        main(["claims", "--file", str(bad), *form])
    assert exc.value.code == 2 and needle in capsys.readouterr().err


def test_shown_keeps_links_to_sections_the_report_has():
    summary = "# advgen report\n\n## Claims\n\n## Dimension (C4)\n"
    assert glance.shown({"C4": "Dimension (C4)", "C5": "Robust accuracy (L-inf)"}, summary) == {"C4": "Dimension (C4)"}


def test_clauses_ignore_a_stray_closing_bracket():
    assert glance.clauses("a) b; c (d; e)") == ["a) b", "c (d; e)"]


def test_bad_claims_get_a_clear_error(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "claims.json"
    bad.write_text(json.dumps([{"id": "C1", "claim": "x", "measured": "y", "verdict": "maybe"}]))
    with pytest.raises(SystemExit) as exc:
        main(["claims", "--file", str(bad)])
    assert exc.value.code == 2 and "claims row C1: verdict 'maybe'" in capsys.readouterr().err
    bad.write_text(json.dumps([{"id": "C1", "claim": "x"}]))
    with pytest.raises(SystemExit):
        main(["claims", "--file", str(bad)])
    assert "claims row 0 (C1) lacks ['measured', 'verdict']" in capsys.readouterr().err
    bad.write_text("{not json")
    with pytest.raises(SystemExit):
        main(["claims", "--file", str(bad)])
    assert f"{bad}: Expecting property name" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(CLAIMS[:1])))
    main(["claims", "--file", "-"])
    assert capsys.readouterr().out.startswith("1 claim: 1 supported\n")


def test_the_readme_screenshot_shows_the_committed_page():
    """`advgen screenshot` records the sha256 of the page it took; the report stage rewrites the
    page, so a stale picture fails here until it is retaken."""
    import hashlib

    shot = json.loads((ROOT / "reports/screenshots/index.json").read_text())
    page = hashlib.sha256((ROOT / "reports/index.html").read_bytes()).hexdigest()
    assert shot["page_sha256"] == page, "reports/screenshots/index.png is older than reports/index.html: run `advgen screenshot`"
    assert (ROOT / "reports/screenshots/index.png").read_bytes()[:4] == b"\x89PNG"
