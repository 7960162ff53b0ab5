"""Headline metrics: scalars only, within budget, derived from the detailed metrics."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from advgen import headline
from advgen.attacks import headline as attacks_headline
from tests.conftest import ROOT

BUDGET = 250  # values DVC shows for every stage up to the report (issue 7); later areas add <= ~50 each
TOTAL = 475  # numeric values `dvc metrics show` lists (issue 20; + 9 for the seed replicates of issue 23, + 14 for the hiding stage of issue 24): the detail stays in the cache: false JSON


def _leaves(obj) -> list:
    return [v for x in obj.values() for v in _leaves(x)] if isinstance(obj, dict) else [obj]


def test_check_rejects_arrays_and_deep_nesting():
    assert headline.check({"a": 1, "g": {"x": 0.5, "y": "ok", "z": True}}) == 4
    with pytest.raises(ValueError, match="'per_class' must be a scalar"):
        headline.check({"per_class": [0.9, 0.8]})
    with pytest.raises(ValueError, match="'g' must hold scalars only"):
        headline.check({"g": {"deep": {"x": 1}}})


def test_write_refuses_a_bad_file_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError):
        headline.write("train/cnn", {"curve": [1, 2]}, root=tmp_path)
    assert not (tmp_path / "train/cnn.json").exists()
    path = headline.write("train/cnn", {"test_accuracy": 0.9}, root=tmp_path)
    assert json.loads(path.read_text()) == {"test_accuracy": 0.9}


def test_attack_headline_drops_eps_zero_and_keeps_square_budgets():
    m = {"accuracy": {"0": 0.9, "0.025": 0.5, "0.1": 0.0}}
    assert attacks_headline.attack(m) == {"accuracy": {"eps=0.025": 0.5, "eps=0.1": 0.0}}
    assert attacks_headline.attack(m, only_eps=0.1) == {"accuracy": {"eps=0.1": 0.0}}
    sq = {"accuracy": {"0": 0.9, "0.1": 0.0}, "square": {"success_at_budget": {"100": 0.4, "10": 0.1},
                                                         "median_queries_to_success": 50.0}}
    assert attacks_headline.attack(sq) == {"accuracy": {"eps=0.1": 0.0}}
    out = attacks_headline.attack(sq, queries=True)
    assert list(out["success_at_queries"]) == ["q=10", "q=100"] and out["median_queries_to_success"] == 50.0


def test_attacks_headline_keeps_one_linf_eps_every_l2_radius_and_square_budgets_when_asked():
    per_attack = {
        "pgd": {"norm": "Linf", "accuracy": {"0": 0.9, "0.05": 0.4, "0.1": 0.1}},
        "pgd_l2": {"norm": "L2", "accuracy": {"0": 0.9, "0.5": 0.5, "1": 0.2}},
        "square": {"norm": "Linf", "accuracy": {"0": 0.9, "0.1": 0.3},
                   "square": {"success_at_budget": {"10": 0.1}, "median_queries_to_success": 7.0}},
    }
    undefended = attacks_headline.attacks(per_attack, 0.1, queries=True)
    assert undefended == {"pgd": {"eps=0.1": 0.1}, "pgd_l2": {"eps=0.5": 0.5, "eps=1": 0.2},
                          "square_success_at_queries": {"q=10": 0.1}, "square_median_queries_to_success": 7.0}
    defended = attacks_headline.attacks(per_attack, 0.1, queries=False)
    assert defended == {"pgd": {"eps=0.1": 0.1}, "pgd_l2": {"eps=0.5": 0.5, "eps=1": 0.2}, "square": {"eps=0.1": 0.3}}


def test_transfer_headline_leaves_out_the_white_box_diagonal():
    m = {"matrix": {"a": {"a": 0.0, "b": 0.6}, "b": {"a": 0.7, "b": 0.1}}}
    assert attacks_headline.transfer(m) == {"accuracy": {"a->b": 0.6, "b->a": 0.7}}


CORE = {"ingest", "train", "attacks", "robustness", "transfer", "forge", "patch", "dimension", "report"}
PER_AREA = 50  # a later area (defenses, backdoors, GANs, diffusion) adds at most this many values
PER_MODEL = 17  # ... plus this many per model it adds to the attack and robustness stages


def _declared_patterns() -> list[re.Pattern]:
    """Every metrics path dvc.yaml declares, ``${...}`` (foreach/matrix items) as a wildcard."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    paths = [next(iter(e)) if isinstance(e, dict) else e
             for stage in stages.values() for e in stage.get("do", stage).get("metrics", [])]
    return [re.compile(re.sub(r"\\\$\\\{[^}]*\\\}", "[^/]+", re.escape(path)) + "$") for path in paths]


def test_committed_headline_files_are_small_scalar_and_declared():
    patterns = _declared_patterns()
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "reports/headline").rglob("*.json"))
    assert len(files) >= 30
    undeclared = [f for f in files if not any(p.match(f) for p in patterns)]
    assert not undeclared, f"headline files dvc.yaml does not declare: {undeclared}"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    unused = [p.pattern for p in patterns if not any(p.match(f) for f in files)]
    if not params["imports"]["models"]:  # no model brought from outside: the import_model stage has no item
        unused.remove("reports/headline/imports/[^/]+\\.json$")
    assert not unused, f"declared metrics with no committed file: {unused}"
    area_models = {"defenses": set(params["defend"]["defenses"]),  # models a later area adds
                   "backdoors": {*params["backdoor_defense"]["models"], params["backdoor_defense"]["reference"]}}
    area_stages = {"defend": "defenses", "sanitize": "defenses", "certify": "defenses", "backdoor": "backdoors"}
    per_group: dict[str, int] = {}
    numeric = 0
    for f in files:
        data = json.loads((ROOT / f).read_text())
        parts = Path(f).relative_to("reports/headline").with_suffix("").parts
        group = area_stages.get(parts[0], parts[0])
        group = next((a for a, ms in area_models.items() if group in CORE and set(parts[1:]) & ms), group)
        per_group[group] = per_group.get(group, 0) + headline.check(data, f)
        numeric += sum(isinstance(v, (int, float)) and not isinstance(v, bool) for v in _leaves(data))
    assert numeric <= TOTAL, (numeric, per_group)
    core = sum(n for g, n in per_group.items() if g in CORE)
    assert 120 <= core <= BUDGET, per_group
    for area, n in per_group.items():
        if area not in CORE:
            assert n <= PER_AREA + PER_MODEL * len(area_models.get(area, ())), (area, per_group)
