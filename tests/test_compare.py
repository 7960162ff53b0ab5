"""``advgen compare``: the pure functions on hand-written ``dvc exp show --json`` output, then the
whole command on a small git + DVC repository (two commits, an experiment, a dirty workspace and
a branch whose dvc.yaml is broken). Every dvc call costs about a second; the repository is built
once per module and each test makes at most two calls."""
from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from advgen import compare as cmp
from advgen.cli import main, venv_env
from advgen.compare import MISSING, CompareError, build_table, collect, parse_exp_show, render_markdown, render_text

# ----------------------------------------------------------------------------- pure functions

BASE = "a" * 40
EXP_OK = "b" * 40
EXP_FAILED = "c" * 40


def _entry(rev, name, metrics, timestamp=None, error=None, experiments=None):
    data = None if error else {"rev": rev, "timestamp": timestamp, "params": {}, "metrics": metrics,
                               "deps": {}, "outs": {}, "meta": {}}
    return {"rev": rev, "name": name, "data": data, "error": error, "experiments": experiments}


# the shape of `dvc exp show --json` (dvc 3.67): workspace first, then each baseline commit with
# its experiments; a file that is missing or unreadable carries "error" instead of "data"
EXP_SHOW = [
    _entry("workspace", None, {
        "reports/headline/train/cnn.json": {"data": {"test_accuracy": 0.95, "ci95": {"lo": 0.93, "hi": 0.96}}},
        "reports/headline/report.json": {"error": {"type": "JSONFileCorruptedError", "msg": "unable to read"}},
    }),
    _entry(BASE, "main", {
        "reports/headline/train/cnn.json": {"data": {"test_accuracy": 0.9123, "ci95": {"lo": 0.89, "hi": 0.93}}},
        "reports/headline/report.json": {"data": {"claims_supported": 6, "verdict_C1": "supported"}},
        "reports/headline/robustness/cnn.json": {"error": {"type": "FileNotFoundError", "msg": "[Errno 2]"}},
        "reports/legacy/metrics.json": {"data": {"interval": [0.1, 0.2]}},
    }, timestamp="2026-01-01T00:00:00", experiments=[
        {"revs": [_entry(EXP_OK, "wider", {"reports/headline/train/cnn.json": {"data": {"test_accuracy": 0.96}}},
                         timestamp="2026-01-02T00:00:00")], "executor": None, "name": "wider"},
        {"revs": [_entry(EXP_FAILED, "broken", {}, error={"type": "ReproductionError", "msg": "failed"})],
         "executor": None, "name": "broken"},
    ]),
]


def test_parse_exp_show_keys_names_and_flattened_metrics():
    revs = parse_exp_show(EXP_SHOW)
    assert list(revs) == ["workspace", BASE, EXP_OK, EXP_FAILED]
    assert revs[BASE].name == "main" and revs[BASE].baseline is None and revs[BASE].error is None
    assert revs[BASE].metrics == {
        "train/cnn: test_accuracy": 0.9123, "train/cnn: ci95.lo": 0.89, "train/cnn: ci95.hi": 0.93,
        "report: claims_supported": 6, "report: verdict_C1": "supported",
        "reports/legacy/metrics: interval": [0.1, 0.2],
    }
    assert revs[BASE].file_errors == {}  # a file that does not exist yet is no error, only missing
    assert revs["workspace"].file_errors == {"reports/headline/report.json": "unable to read"}
    assert revs["workspace"].metrics == {"train/cnn: test_accuracy": 0.95, "train/cnn: ci95.lo": 0.93,
                                         "train/cnn: ci95.hi": 0.96}
    assert (revs[EXP_OK].name, revs[EXP_OK].baseline) == ("wider", BASE)
    assert revs[EXP_OK].metrics == {"train/cnn: test_accuracy": 0.96}
    assert revs[EXP_FAILED].error == "failed"
    assert [e.name for e in cmp.experiments_of(revs, BASE)] == ["broken", "wider"]  # oldest first (no date first)


@pytest.mark.parametrize(("path", "label"), [
    ("reports/headline/train/cnn.json", "train/cnn"),
    ("reports/headline/report.json", "report"),
    ("reports/headline/robustness/cnn.yaml", "robustness/cnn"),
    ("reports/transfer/metrics.json", "reports/transfer/metrics"),
    ("metrics", "metrics"),
])
def test_metric_file_label(path, label):
    assert cmp.metric_file_label(path) == label


def test_flatten_nested_keys():
    assert cmp.flatten({"a": 1, "b": {"c": 2, "d": {"e": [3]}}, "f": {}}) == {"a": 1, "b.c": 2, "b.d.e": [3]}


@pytest.mark.parametrize(("value", "text"), [
    (0.9123, "0.9123"), (0.926, "0.926"), (0.49412, "0.4941"), (0.00012346, "0.0001235"), (12.3456, "12.35"),
    (1234567.8, "1234568"), (5.0, "5"), (0.0, "0"), (-0.25, "-0.25"), (7, "7"), (float("nan"), "nan"),
])
def test_format_number(value, text):
    assert cmp.format_number(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (MISSING, "—"), (True, "true"), (False, "false"), (None, "null"), ("supported", "supported"),
    ([0.1, 0.2], "[0.1, 0.2]"), (0.93, "0.93"), (6, "6"),
])
def test_format_value(value, text):
    assert cmp.format_value(value) == text


@pytest.mark.parametrize(("old", "new", "text"), [
    (0.9, 0.9123, "+0.0123"), (0.9123, 0.9, "-0.0123"), (5, 6, "+1"), (6, 5, "-1"), (0.25, 0.25, "0"),
    (1, 1.0, "0"), (0.3068, 0.3047, "-0.0021"), (0.44031, 0.44034, "+0.00003"), (2.5, 4, "+1.5"),
    ("supported", "not_supported", ""), (True, False, ""), (MISSING, 0.9, ""), (0.9, MISSING, ""),
])
def test_format_delta(old, new, text):
    assert cmp.format_delta(old, new) == text


COLUMNS = [
    ("HEAD~1", {"train/cnn: test_accuracy": 0.9, "train/cnn: test_loss": 0.25, "report: verdict_C1": "supported",
                "report: all_checks_pass": True, "report: claims_supported": 5, "old: gone": 1}),
    ("HEAD", {"train/cnn: test_accuracy": 0.9123, "train/cnn: test_loss": 0.25, "report: verdict_C1": "supported",
              "report: all_checks_pass": 1, "report: claims_supported": 5.0, "new: metric": 0.5}),
]


def test_build_table_hides_unchanged_rows_and_computes_change():
    table = build_table(COLUMNS)
    rows = {r.metric: (r.values, r.change) for r in table.rows}
    assert rows == {
        "train/cnn: test_accuracy": ([0.9, 0.9123], "+0.0123"),
        "report: all_checks_pass": ([True, 1], ""),  # a bool is not the number 1
        "old: gone": ([1, MISSING], ""),
        "new: metric": ([MISSING, 0.5], ""),
    }
    assert [r.metric for r in table.rows] == list(rows)  # first-seen order, the first column's first
    assert table.hidden == 3  # test_loss, verdict_C1, claims_supported (5 == 5.0)
    assert table.footer == "3 unchanged metrics hidden; --all shows them"


def test_build_table_all_shows_every_row():
    table = build_table(COLUMNS, show_all=True)
    assert table.hidden == 0 and table.footer == ""
    assert len(table.rows) == 7
    assert {r.metric: r.change for r in table.rows}["train/cnn: test_loss"] == "0"


def test_build_table_three_columns_has_no_change_column():
    cols = [*COLUMNS, ("workspace", {"train/cnn: test_accuracy": 0.95, "train/cnn: test_loss": 0.25})]
    table = build_table(cols)
    assert [r.change for r in table.rows] == [None] * len(table.rows)
    assert "train/cnn: test_loss" not in [r.metric for r in table.rows]  # 0.25 everywhere
    assert "report: verdict_C1" in [r.metric for r in table.rows]  # missing in the workspace
    text = render_text(table)
    assert text.splitlines()[0] == "Headline metrics: HEAD~1 → HEAD → workspace"
    assert text.splitlines()[2].split() == ["metric", "HEAD~1", "HEAD", "workspace"]
    assert render_markdown(table).splitlines()[2] == "| metric | HEAD~1 | HEAD | workspace |"


def test_render_text_is_aligned_with_title_and_footer():
    assert render_text(build_table(COLUMNS)) == textwrap.dedent("""\
        Headline metrics: HEAD~1 → HEAD

        metric                    HEAD~1    HEAD   change
        ------------------------  ------  ------  -------
        train/cnn: test_accuracy     0.9  0.9123  +0.0123
        report: all_checks_pass     true       1
        old: gone                      1       —
        new: metric                    —     0.5

        3 unchanged metrics hidden; --all shows them
        """)


def test_render_markdown_table():
    md = render_markdown(build_table(COLUMNS))
    assert md == textwrap.dedent("""\
        **Headline metrics: HEAD~1 → HEAD**

        | metric | HEAD~1 | HEAD | change |
        |:---|---:|---:|---:|
        | train/cnn: test_accuracy | 0.9 | 0.9123 | +0.0123 |
        | report: all_checks_pass | true | 1 |  |
        | old: gone | 1 | — |  |
        | new: metric | — | 0.5 |  |

        _3 unchanged metrics hidden; `--all` shows them._
        """)


def test_render_markdown_escapes_pipes_and_says_when_nothing_changed():
    table = build_table([("a", {"x: y": "p|q"}), ("b", {"x: y": "p|r"})])
    assert "| x: y | p\\|q | p\\|r |  |" in render_markdown(table)
    same = build_table([("a", {"x": 1}), ("b", {"x": 1})])
    assert "No metric differs." in render_text(same)
    assert "1 unchanged metric hidden; --all shows it" in render_text(same)


@pytest.mark.parametrize(("revs", "exp", "wanted"), [
    ([], False, ["HEAD", "workspace"]),
    (["main"], False, ["main", "workspace"]),
    (["HEAD~1", "HEAD"], False, ["HEAD~1", "HEAD"]),
    (["a", "b", "workspace"], False, ["a", "b", "workspace"]),
    ([], True, ["HEAD"]),
    (["main"], True, ["main"]),
])
def test_default_revisions(revs, exp, wanted):
    assert cmp.default_revisions(revs, exp) == wanted


# ----------------------------------------------------------------------------- a real repository

SCORE = """\
import json, yaml
acc = yaml.safe_load(open("params.yaml"))["acc"]
headline = {"test_accuracy": acc, "test_loss": 0.25, "ci95": {"lo": 0.89, "hi": 0.92}}
json.dump(headline, open("reports/headline/train/cnn.json", "w"))
"""
DVC_YAML = """\
stages:
  score:
    cmd: python score.py
    deps: [score.py]
    params: [acc]
    metrics:
      - reports/headline/train/cnn.json:
          cache: false
metrics:
  - reports/headline/report.json
"""
V1 = ({"test_accuracy": 0.9, "test_loss": 0.25, "ci95": {"lo": 0.88, "hi": 0.92}},
      {"claims_supported": 5, "verdict_C1": "supported", "all_checks_pass": True})
V2 = ({"test_accuracy": 0.9123, "test_loss": 0.25, "ci95": {"lo": 0.89, "hi": 0.92}},
      {"claims_supported": 6, "verdict_C1": "not_supported", "all_checks_pass": True})
CHANGED = ["train/cnn: test_accuracy", "train/cnn: ci95.lo", "report: claims_supported", "report: verdict_C1"]
UNCHANGED = ["train/cnn: test_loss", "train/cnn: ci95.hi", "report: all_checks_pass"]


def _run(repo: Path, *cmd: str) -> None:
    subprocess.run(cmd, cwd=repo, check=True, capture_output=True, env=venv_env())


def _write(repo: Path, acc: float, cnn: dict, report: dict) -> None:
    (repo / "params.yaml").write_text(f"acc: {acc}\n")
    (repo / "reports/headline/train/cnn.json").write_text(json.dumps(cnn))
    (repo / "reports/headline/report.json").write_text(json.dumps(report))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """main: v1 (HEAD~1) and v2 (HEAD); an experiment `better` of HEAD (test_accuracy 0.95, which
    `dvc exp run` leaves in the workspace) and, uncommitted, claims_supported 7; a branch `broken`
    whose dvc.yaml does not parse."""
    repo = tmp_path_factory.mktemp("compare-repo")
    dvc = cmp.dvc_command()
    _run(repo, "git", "init", "-q", "-b", "main")
    _run(repo, "git", "config", "user.email", "test@example.com")
    _run(repo, "git", "config", "user.name", "test")
    _run(repo, *dvc, "init", "-q")
    with open(repo / ".dvc/config", "a") as fh:
        fh.write("[core]\n    analytics = false\n")
    (repo / "reports/headline/train").mkdir(parents=True)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "score.py").write_text(SCORE)
    _write(repo, 0.9, *V1)
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-q", "-m", "v1")
    _write(repo, 0.9123, *V2)
    _run(repo, "git", "commit", "-q", "-am", "v2")
    _run(repo, "git", "checkout", "-q", "-b", "broken")
    (repo / "dvc.yaml").write_text("stages: [\n")
    _run(repo, "git", "commit", "-q", "-am", "broken dvc.yaml")
    _run(repo, "git", "checkout", "-q", "main")
    _run(repo, *dvc, "exp", "run", "-q", "-S", "acc=0.95", "-n", "better")
    (repo / "reports/headline/report.json").write_text(json.dumps({**V2[1], "claims_supported": 7}))
    return repo


@pytest.fixture(scope="module")
def two_commits(repo):
    return collect(["HEAD~1", "HEAD"], cwd=repo)


def test_collect_reads_each_revision_from_dvc(two_commits):
    columns, notes = two_commits
    assert [label for label, _ in columns] == ["HEAD~1", "HEAD"]
    assert columns[0][1] == {"train/cnn: test_accuracy": 0.9, "train/cnn: test_loss": 0.25,
                             "train/cnn: ci95.lo": 0.88, "train/cnn: ci95.hi": 0.92,
                             "report: claims_supported": 5, "report: verdict_C1": "supported",
                             "report: all_checks_pass": True}
    assert columns[1][1]["train/cnn: test_accuracy"] == 0.9123
    assert columns[1][1]["report: verdict_C1"] == "not_supported"
    assert notes == []


def test_two_commits_table_hides_unchanged_and_shows_delta(two_commits):
    columns, _ = two_commits
    table = build_table(columns)
    assert sorted(r.metric for r in table.rows) == sorted(CHANGED)
    assert table.hidden == len(UNCHANGED)
    change = {r.metric: r.change for r in table.rows}
    assert change == {"train/cnn: test_accuracy": "+0.0123", "train/cnn: ci95.lo": "+0.01",
                      "report: claims_supported": "+1", "report: verdict_C1": ""}
    full = build_table(columns, show_all=True)
    assert sorted(r.metric for r in full.rows) == sorted(CHANGED + UNCHANGED) and full.hidden == 0


def test_cli_markdown_for_two_commits(repo, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    main(["compare", "HEAD~1", "HEAD", "--markdown"])
    assert capsys.readouterr().out == textwrap.dedent("""\
        **Headline metrics: HEAD~1 → HEAD**

        | metric | HEAD~1 | HEAD | change |
        |:---|---:|---:|---:|
        | train/cnn: test_accuracy | 0.9 | 0.9123 | +0.0123 |
        | train/cnn: ci95.lo | 0.88 | 0.89 | +0.01 |
        | report: claims_supported | 5 | 6 | +1 |
        | report: verdict_C1 | supported | not_supported |  |

        _3 unchanged metrics hidden; `--all` shows them._
        """)


def test_cli_without_revisions_compares_head_with_workspace(repo, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    main(["compare"])
    assert capsys.readouterr().out == textwrap.dedent("""\
        Headline metrics: HEAD → workspace

        metric                      HEAD  workspace   change
        ------------------------  ------  ---------  -------
        train/cnn: test_accuracy  0.9123       0.95  +0.0377
        report: claims_supported       6          7       +1

        5 unchanged metrics hidden; --all shows them
        """)


def test_experiments_by_flag_and_by_name(repo):
    columns, _ = collect([], experiments=True, cwd=repo)
    assert [label for label, _ in columns] == ["HEAD", "better"]
    assert columns[1][1]["train/cnn: test_accuracy"] == 0.95
    assert columns[1][1]["report: claims_supported"] == 6  # the experiment's commit, not the dirty workspace
    table = build_table(collect(["HEAD~1", "better"], cwd=repo)[0])
    assert {r.metric: r.change for r in table.rows}["train/cnn: test_accuracy"] == "+0.05"


def test_unknown_revision_is_a_one_line_error(repo, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    with pytest.raises(SystemExit) as exc:
        main(["compare", "HEAD~1", "nosuch"])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "advgen compare: error: unknown revision or experiment 'nosuch'\n"


def test_revision_dvc_cannot_read_is_a_one_line_error(repo, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    with pytest.raises(SystemExit) as exc:
        main(["compare", "broken", "HEAD"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith("advgen compare: error: dvc cannot read revision 'broken': ") and "dvc.yaml" in err


def test_dvc_failure_is_a_compare_error(repo, monkeypatch):
    """A failing dvc command (here: a made-up subcommand) raises CompareError with dvc's message."""
    with pytest.raises(CompareError, match=r"^while testing: .*nosuchcommand"):
        cmp.run_dvc(["nosuchcommand"], cwd=repo, what="while testing: ")
