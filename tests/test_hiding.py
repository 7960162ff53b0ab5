"""Hiding information (issue 24, claim C9b): the per-image bookkeeping of the hiding stage, its
worst case per API, its paired test, the claim's verdict and the stage's params, against hand
computations and a linear classifier's exact minimal distance."""
from __future__ import annotations

import copy

import pytest
import torch
import yaml

from advgen.claims import claims_table
from advgen.config import ConfigError, load_section
from advgen.defenses.claims import CLAIMS
from advgen.defenses.hiding import _square_success, accuracy, broken_at, evaluate_models, worst_case
from advgen.defenses.params import HidingConfig, check_hiding
from advgen.seeds.params import ReplicateConfig
from tests.conftest import ROOT
from tests.test_decision import _exact, _inputs, _linear


def test_broken_at_is_the_first_successful_budget_and_zero_for_a_misclassified_image():
    success = torch.tensor([[False, True, True], [False, False, False], [True, True, True], [False, False, True]])
    clean = torch.tensor([True, True, False, True])
    first = broken_at(success, clean, [10, 100, 1000])
    assert first == [100, None, 0, 1000]
    assert accuracy(first, [10, 100, 1000]) == {10: 0.75, 100: 0.5, 1000: 0.25}


def test_square_counts_an_image_broken_at_the_budget_its_query_falls_in():
    """Square's queries_to_success: 0 = misclassified unattacked, -1 = never, q = fooled at query q
    (counted within any budget >= q)."""
    q = torch.tensor([0, -1, 10, 11, 100])
    assert _square_success(q, [10, 100]).tolist() == [[True, True], [False, False], [True, True], [False, True],
                                                      [False, True]]


def _rows(square_scores, square_rounded, hsj):
    return [{"api": "scores", "attack": "square", "broken_at": square_scores},
            {"api": "rounded", "attack": "square", "broken_at": square_rounded},
            {"api": "label", "attack": "hopskipjump_linf", "broken_at": hsj},
            {"api": "label", "attack": "hopskipjump_l2", "median_l2": {}}]


def test_an_apis_worst_case_is_the_earliest_break_over_what_it_reveals_and_the_paired_test_counts_by_hand():
    budgets = [10, 100, 1000]
    w = worst_case(_rows([10, None, 0, 1000, None, 100], [None, None, 0, 1000, None, None],
                         [1000, 100, 0, None, None, None]), budgets)
    assert w["scores"]["broken_at"] == [10, 100, 0, 1000, None, 100]
    assert w["rounded"]["broken_at"] == [1000, 100, 0, 1000, None, None]
    assert w["label"]["broken_at"] == [1000, 100, 0, None, None, None]
    assert w["label"]["attacks"] == ["hopskipjump_linf"]
    assert w["scores"]["accuracy"] == {"10": 4 / 6, "100": 2 / 6, "1000": 1 / 6}
    # at 100 queries: full scores lost images 0, 1, 2, 5; rounded lost 1, 2: it keeps 0 and 5
    t = w["rounded"]["vs_scores"]["100"]
    assert (t["only_a"], t["only_b"], t["p_a_higher"]) == (2, 0, 0.25)
    t = w["label"]["vs_scores"]["1000"]  # full scores lost all but image 4; the label API keeps 3 and 5 too
    assert (t["only_a"], t["only_b"], t["p_a_higher"]) == (2, 0, 0.25)
    assert "vs_scores" not in w["scores"]


def test_the_stage_never_counts_an_image_broken_beyond_its_exact_distance_and_finds_the_near_ones():
    """On a linear classifier the exact minimal L-inf distance of each image is known: an API may
    count an image broken only if it is at most eps, and with 1,000 queries the label-only attack
    must break the images that lie well inside eps."""
    model = _linear(seed=0)
    x, y = _inputs(model, n=12)
    exact = _exact(model, x, y, dual=1).detach()
    eps = float(exact.median().detach())  # half the images are robust by the math
    m, curve, seconds = evaluate_models({"lin": model}, x, y, eps=eps, decimals=2, budgets=[20, 200, 1000], p_init=0.3,
                               queries_per_minute=3, seed=0, batch_size=5)
    r = m["models"]["lin"]
    assert len(seconds) == 5 and all(v >= 0 for v in seconds.values()) and "seconds" not in str(m)
    assert r["clean_accuracy"] == 1.0 and r["hours_per_image"]["1000"] == pytest.approx(1000 / 180)
    for api, w in r["apis"].items():
        broken = [f is not None for f in w["broken_at"]]
        assert all(exact[i] <= eps + 1e-6 for i, b in enumerate(broken) if b), api
    near = exact <= 0.6 * eps
    assert near.any()
    assert all(r["apis"]["label"]["broken_at"][i] is not None for i in near.nonzero().flatten().tolist())
    assert {(c["api"], c["queries"]) for c in curve} == {(a, q) for a in ("scores", "rounded", "label")
                                                         for q in (20, 200, 1000)}
    l2 = {row["attack"]: row["median_l2"] for row in r["rows"] if "median_l2" in row}
    exact_l2 = float(_exact(model, x, y, dual=2).detach().median())
    assert set(l2) == {"hopskipjump_l2", "boundary"}
    assert all(v["1000"] >= exact_l2 - 1e-6 for v in l2.values())  # never below the exact distance


def _metrics(label_1000=(60, 1e-4), rounded_1000=(45, 0.01), last=(0, 30, 20), clean=0.9, defended=None):
    """hiding metrics with the figures C9b reads: accuracy % and paired p at 1,000, and each
    API's accuracy % at 10,000 (scores, rounded, label)."""
    def api(acc1000, acc_last, p=None):
        a = {"accuracy": {"100": 0.8, "1000": acc1000 / 100, "10000": acc_last / 100}}
        if p is not None:
            a["vs_scores"] = {"1000": {"only_a": 9, "only_b": 0, "p_a_higher": p}}
        return a
    base = {"n": 100, "eps": 0.1, "decimals": 2, "budgets": [100, 1000, 10000], "clean_accuracy": clean,
            "queries_per_minute": 3, "hours_per_image": {"100": 0.56, "1000": 5.56, "10000": 55.6},
            "rows": [{"api": "rounded", "attack": "square", "accuracy": {"1000": 0.45, "10000": 0.4}},
                     {"api": "label", "attack": "hopskipjump_l2", "median_l2": {"10000": 0.75}}],
            "apis": {"scores": api(25, last[0]), "rounded": api(*rounded_1000[:1], last[1], rounded_1000[1]),
                     "label": api(*label_1000[:1], last[2], label_1000[1])}}
    other = copy.deepcopy(base) if defended is None else defended["hiding"]["metrics"]["models"]["cnn"]
    return {"hiding": {"metrics": {"seed": 0, "folder": "models/replicate/c9/0", "base": "cnn",
                                   "defended": "cnn_fgsm_at", "models": {"cnn": base, "cnn_fgsm_at": other}}}}


def test_c9b_is_supported_only_when_hiding_raises_the_queries_and_does_not_stop_the_attack():
    judge = CLAIMS.evaluators["C9b"]
    ok = judge(_metrics())
    assert ok.verdict == "supported"
    assert "rounded 45.0% -> 30.0%" in ok.measured and "label p = 0.0001" in ok.measured and "0.75" in ok.measured
    assert "Square alone on rounded scores: 40.0% after 10000" in ok.measured
    assert "the criterion holds on it" in ok.measured
    # the defended model is reported beside it, its own outcome named, the verdict still the base model's
    mixed = judge(_metrics(defended=_metrics(last=(0, 30, 80))))
    assert mixed.verdict == "supported" and "the criterion fails on it (queries raised: yes, attack not stopped: no)" in mixed.measured
    assert judge(_metrics(label_1000=(60, 0.0))).measured.count("label p < 1e-6") == 2  # rounded to 0 in the JSON
    assert judge(_metrics(rounded_1000=(45, 0.05))).verdict == "not_supported"  # p must be below alpha
    # rounding no better than full scores at 1,000 queries: the queries are not raised
    assert judge(_metrics(rounded_1000=(45, 0.2))).verdict == "not_supported"
    assert judge(_metrics(rounded_1000=(25, 1e-4))).verdict == "not_supported"
    # the label API stops the attack: more than half the clean accuracy left at the largest budget
    assert judge(_metrics(last=(0, 30, 46))).verdict == "not_supported"
    assert judge(_metrics(last=(0, 30, 45))).verdict == "supported"  # exactly half: not stopped
    assert judge({}) is None


def test_c9b_without_its_budget_is_not_measured_and_names_what_it_needs():
    c = _metrics()
    r = c["hiding"]["metrics"]["models"]["cnn"]
    for a in r["apis"].values():
        a["accuracy"].pop("1000")
    row = next(r for r in claims_table(c, [CLAIMS]) if r["id"] == "C9b")
    assert row["verdict"] == "not_measured" and "1000 and 10000 in hiding.budgets" in row["measured"]


def _hiding_cfg(**kw) -> HidingConfig:  # a valid config with ``kw`` changed
    args = {"seed": 0, "eps": 0.1, "decimals": 2, "p_init": 0.8, "batch_size": 100, "n_eval": 100,
            "budgets": [10, 100, 1000, 10000], **kw}
    return HidingConfig(**args)


@pytest.mark.parametrize("section, kw, key", [
    ("profile", {"budgets": [100, 10]}, r"profiles\.default\.hiding\.budgets"),
    ("profile", {"budgets": []}, r"profiles\.default\.hiding\.budgets"),
    ("profile", {"n_eval": 0}, r"profiles\.default\.hiding\.n_eval"),
    ("hiding", {"eps": 0}, r"hiding\.eps"), ("hiding", {"decimals": -1}, r"hiding\.decimals")])
def test_bad_hiding_params_name_their_key(section, kw, key):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (params["profiles"]["default"]["hiding"] if section == "profile" else params["hiding"]).update(kw)
    load_section(HidingConfig, yaml.safe_load((ROOT / "params.yaml").read_text()), "hiding")  # the real one loads
    with pytest.raises(ConfigError, match=key):
        load_section(HidingConfig, params, "hiding")


def test_the_hiding_seed_must_be_a_replicated_seed():
    rep = ReplicateConfig(seeds=[0, 1, 2], c9="cnn_fgsm_at", c10={"source_specific": "a", "all_to_one": "b"})
    check_hiding(_hiding_cfg(seed=2), rep)
    with pytest.raises(ConfigError, match=r"'hiding.seed' = 5 is not in replicate.seeds \[0, 1, 2\]"):
        check_hiding(_hiding_cfg(seed=5), rep)


def test_the_committed_c9b_verdict_follows_the_committed_metrics():
    """The default run's C9b row, recomputed with the criterion's arithmetic from the per-image
    breaks in reports/hiding/metrics.json (not from the evaluator's own fields)."""
    import json
    import math

    m = json.loads((ROOT / "reports/hiding/metrics.json").read_text())
    r = m["models"][m["base"]]

    def kept(api: str, b: int) -> list[bool]:
        return [f is None or f > b for f in r["apis"][api]["broken_at"]]

    def sign_test(a: list[bool], b: list[bool]) -> float:  # one-sided exact: a keeps more than b
        only_a, only_b = sum(x and not y for x, y in zip(a, b)), sum(y and not x for x, y in zip(a, b))
        n = only_a + only_b
        return sum(math.comb(n, i) for i in range(only_a, n + 1)) / 2 ** n if n else 1.0

    full = kept("scores", 1000)
    raises = all(sum(kept(a, 1000)) > sum(full) and sign_test(kept(a, 1000), full) < 0.05 for a in ("rounded", "label"))
    not_stopped = all(sum(kept(a, 10000)) / r["n"] <= r["clean_accuracy"] / 2 for a in ("rounded", "label"))
    row = next(c for c in json.loads((ROOT / "reports/claims.json").read_text()) if c["id"] == "C9b")
    assert row["verdict"] == ("supported" if raises and not_stopped else "not_supported")
