"""Verdicts over seeds (issue 23): the seed rule of advgen.claims, the replicated claims' use of
it, and the replicate area's params."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

from advgen.backdoors import claims as bd_claims
from advgen.backdoors.params import PoisonConfig
from advgen.claims import SeedFigure, needed, over_seeds, seed_runs, t_interval
from advgen.config import ConfigError, load_section
from advgen.defenses import claims as def_claims
from advgen.defenses.params import DefendConfig
from advgen.schema import TrainConfig
from advgen.seeds.params import ReplicateConfig, check, judged_configs, lecture_defense

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())


def test_t_interval_matches_the_textbook_values():
    # mean 2, sd 1, n 3: half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051
    mean, lo, hi = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and hi - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6) and mean - lo == hi - mean
    # n = 2: t(0.975, 1) = 12.7062; sd of (0, 1) = 1/sqrt(2)
    _, lo2, hi2 = t_interval([0.0, 1.0])
    assert hi2 - lo2 == pytest.approx(2 * 12.706205 * (1 / math.sqrt(2)) / math.sqrt(2), rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([1.0])


def test_needed_is_two_of_every_three():
    assert [needed(n) for n in (2, 3, 4, 5, 6)] == [2, 2, 3, 4, 4]


def test_the_seed_rule_needs_the_whole_interval_and_two_of_three_seeds():
    tight = SeedFigure("gain", (0.40, 0.42, 0.41), 0.10)
    assert over_seeds([0, 1, 2], [tight], [True, True, True]).verdict == "supported"
    # the mean passes but its interval reaches below the threshold: not supported
    wide = SeedFigure("gain", (0.02, 0.40, 0.45), 0.10)
    j = over_seeds([0, 1, 2], [wide], [False, True, True])
    assert j.verdict == "not_supported" and "not all on the >= 10 side" in j.text
    # the interval passes, but only one seed meets the whole criterion (e.g. its paired test)
    assert over_seeds([0, 1, 2], [tight], [True, False, False]).verdict == "not_supported"
    assert over_seeds([0, 1, 2], [tight], [True, False, True]).verdict == "supported"
    # a figure that must stay below its threshold
    drop = SeedFigure("drop", (0.001, 0.002, 0.003), 0.01, higher=False, unit="")
    j = over_seeds([0, 1, 2], [tight, drop], [True] * 3)
    assert j.verdict == "supported" and j.text.startswith("seeds 0 / 1 / 2: gain 40.0 / 42.0 / 41.0%")
    assert "drop 0.1 / 0.2 / 0.3: mean 0.2 [" in j.text and "holds on 3 of 3 seeds (needs 2)" in j.text
    with pytest.raises(ValueError, match="one value per seed"):
        over_seeds([0, 1], [tight], [True, True])
    with pytest.raises(ValueError, match=">= 2 seeds"):
        over_seeds([0], [SeedFigure("g", (0.5,), 0.1)], [True])


def test_seed_runs_reads_only_replicate_folders_in_numeric_order():
    c = {"replicate/c9/10": {"metrics": {"s": 10}}, "replicate/c9/2": {"metrics": {"s": 2}},
         "replicate/c9/x": {"metrics": {}}, "replicate/c10/1": {"metrics": {}}, "replicate/c9/3": {"cost": {}}}
    assert list(seed_runs(c, "replicate/c9")) == [2, 10]


def _c9_collected(seed_gains: dict[int, tuple[float, float]] | None) -> dict:
    vs = {"0.1": {"defended_worst_case": 0.52, "base_pgd": 0.01, "paired": {"p_a_higher": 0.0}}}
    c = {"defend/cnn_fgsm_at": {"metrics": {"defense": {"method": "fgsm"}}},
         "robustness/cnn_fgsm_at": {"metrics": {"vs_base": {"base": "cnn", "eps": vs}, "n": 500,
                                                "clean_accuracy": 0.87, "linf": {"fgsm": {"0.1": 0.74}}}},
         "robustness/cnn": {"metrics": {"clean_accuracy": 0.93}}}
    for s, (gain, p) in (seed_gains or {}).items():
        c[f"replicate/c9/{s}"] = {"metrics": {"gain": gain, "paired": {"p_a_higher": p}}}
    return c


def test_c9_is_judged_over_seeds_when_replicates_exist():
    single = def_claims._c9(_c9_collected(None))
    assert single.verdict == "supported" and single.seeds == ""
    over = def_claims._c9(_c9_collected({0: (0.50, 0.0), 1: (0.48, 0.0), 2: (0.52, 0.0)}))
    assert over.verdict == "supported" and over.seeds.startswith("seeds 0 / 1 / 2: gain (points) 50.0 / 48.0 / 52.0")
    assert "2 of every 3 seeds" in over.criterion
    # the main run passes, the seeds do not: the seed rule decides
    flaky = def_claims._c9(_c9_collected({0: (0.50, 0.0), 1: (0.02, 0.3), 2: (0.05, 0.2)}))
    assert flaky.verdict == "not_supported" and "holds on 1 of 3 seeds" in flaky.seeds


def _c10_seed(asr_src: float, drop_src: float, asr_10: float = 1.0, drop_10: float = 0.0) -> dict:
    def row(asr, drop):
        return {"asr": {"value": asr}, "ca_drop": {"value": drop}}
    return {"metrics": {"configs": {"badnets_src": row(asr_src, drop_src), "badnets_10": row(asr_10, drop_10)}}}


def test_c10_over_seeds_needs_every_config_and_figure():
    good = {f"replicate/c10/{s}": _c10_seed(0.99, d) for s, d in ((0, 0.001), (1, -0.002), (2, 0.0))}
    assert bd_claims._over_seeds(good, 0.9, 0.01).verdict == "supported"
    # the clean-accuracy drop of one config is too uncertain over seeds
    noisy = {f"replicate/c10/{s}": _c10_seed(0.99, d) for s, d in ((0, 0.0), (1, 0.009), (2, 0.02))}
    j = bd_claims._over_seeds(noisy, 0.9, 0.01)
    assert j.verdict == "not_supported" and "badnets_src CA drop (points) 0.0 / 0.9 / 2.0" in j.text
    assert bd_claims._over_seeds({"replicate/c10/0": _c10_seed(1, 0)}, 0.9, 0.01) is None


def test_the_replicated_configs_are_those_the_claims_judge():
    train, poison = load_section(TrainConfig, PARAMS, "train"), load_section(PoisonConfig, PARAMS, "poison")
    defend = load_section(DefendConfig, PARAMS, "defend")
    assert judged_configs(poison, train) == ["badnets_src", "badnets_10"]
    assert lecture_defense(defend) == "cnn_fgsm_at"
    rep = load_section(ReplicateConfig, PARAMS, "replicate")
    check({"replicate": rep, "defend": defend, "poison": poison, "train": train})  # the committed params agree
    wrong = copy.deepcopy(rep)
    wrong.c10 = {"source_specific": "badnets_src", "all_to_one": "badnets_5"}
    with pytest.raises(ConfigError, match=r"'replicate\.c10' = .*badnets_5.*; C10 judges .*badnets_10"):
        check({"replicate": wrong, "defend": defend, "poison": poison, "train": train})
    wrong = copy.deepcopy(rep)
    wrong.c9 = "cnn_pgd_at"
    with pytest.raises(ConfigError, match=r"'replicate\.c9' = 'cnn_pgd_at'; C9 judges 'cnn_fgsm_at'"):
        check({"replicate": wrong, "defend": defend})
    p = copy.deepcopy(PARAMS)
    p["poison"]["configs"] = {"blended_1": p["poison"]["configs"]["blended_1"]}
    with pytest.raises(ConfigError, match="no source-specific one"):
        judged_configs(load_section(PoisonConfig, p, "poison"), train)
    p["defend"]["defenses"] = {"cnn_pgd_at": p["defend"]["defenses"]["cnn_pgd_at"]}
    with pytest.raises(ConfigError, match="no entry with method 'fgsm'"):
        lecture_defense(load_section(DefendConfig, p, "defend"))


def test_bad_c10_names_the_key():
    p = copy.deepcopy(PARAMS)
    p["replicate"]["c10"] = {"source_specific": "badnets_src"}
    with pytest.raises(ConfigError, match=r"replicate\.c10.*must map \['source_specific', 'all_to_one'\]"):
        load_section(ReplicateConfig, p, "replicate")


@pytest.mark.parametrize("seeds, message", [([0], "at least 2 seeds"), ([0, 0, 1], "distinct"),
                                            ([0, -1], "integers >= 0"), ("0,1", r"expected list\[int\]"),
                                            ([0, True], r"expected list\[int\]")])
def test_bad_seeds_name_the_key(seeds, message):
    p = copy.deepcopy(PARAMS)
    p["replicate"]["seeds"] = seeds
    with pytest.raises(ConfigError, match=rf"replicate\.seeds.*{message}"):
        load_section(ReplicateConfig, p, "replicate")
