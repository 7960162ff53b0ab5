"""Claims registry and report rendering."""
import json
import math

import pytest
import torch

from advgen.claims import CLAIMS, c3_worked_example, claims_table
from advgen.report import build_report
from advgen.stats import mcnemar


def test_c3_is_the_lecture_example():
    r = c3_worked_example()
    assert r["w_norm2_sq"] == 28 and r["logit_before"] == -4
    assert round(r["before"], 3) == 0.018 and round(r["after_eps_w"], 2) == 0.83
    assert math.isclose(r["after_eps_w"], 1 / (1 + math.exp(-1.6)))


def test_every_claim_has_a_row_and_only_c3_needs_no_data():
    rows = claims_table({})
    assert [r["id"] for r in rows] == [f"C{i}" for i in range(1, 19)] == list(CLAIMS)
    verdicts = {r["id"]: r["verdict"] for r in rows}
    assert verdicts.pop("C3") == "supported"
    assert set(verdicts.values()) == {"not_measured"}  # no metrics, no verdict
    c3 = next(r for r in rows if r["id"] == "C3")
    assert c3["experiment"].startswith("worked example, not an experiment")
    assert set(rows[0]) == {"id", "claim", "experiment", "measured", "criterion", "verdict"}


def _paired(clean_right_only: int, adv_right_only: int) -> dict:
    a = torch.tensor([1] * clean_right_only + [0] * adv_right_only).bool()
    return mcnemar(a, ~a)


def _robustness(fgsm_05: float, flips: tuple[int, int], noise: float | None = 0.88,
                transfer_test: tuple[int, int] | None = (0, 300)) -> dict:
    linf = {"fgsm": {"0.05": fgsm_05, "0.1": 0.1}}
    if noise is not None:
        linf["noise"] = {"0.1": noise}
    paired = {"vs_clean": {"fgsm": {"0.05": _paired(*flips)}}}
    if transfer_test is not None:
        paired["transfer_vs_noise"] = {"cnn_seed1": _paired(*reversed(transfer_test))}
    return {"metrics": {"n": 1000, "clean_accuracy": 0.92, "linf": linf, "paired": paired}}


def _transfer(best: float) -> dict:
    return {"metrics": {"eps": 0.1, "steps": 20, "n": 1000, "clean": {"cnn": 0.92},
                        "matrix": {"cnn_seed1": {"cnn": best}, "resnet": {"cnn": 0.8}, "cnn": {"cnn": 0.0}}}}


def _verdicts(collected: dict) -> dict:
    return {r["id"]: r["verdict"] for r in claims_table(collected)}


@pytest.mark.parametrize("fgsm, flips, verdict", [
    (0.50, (420, 0), "supported"),
    (0.80, (120, 0), "not_supported"),  # significant but a drop of 12 points < 20
    (0.71, (6, 0), "not_supported"),  # a large drop on paper, but 6 flips are not significant (p = 0.016)
])
def test_c5_needs_a_large_and_significant_drop(fgsm, flips, verdict):
    assert _verdicts({"robustness/cnn": _robustness(fgsm, flips)})["C5"] == verdict


def test_c6_missing_noise_figure_is_not_measured():
    """A missing baseline once counted as a zero drop and let C6 pass quietly."""
    assert _verdicts({"transfer": _transfer(0.4), "robustness/cnn": _robustness(0.5, (420, 0))})["C6"] == "supported"
    assert _verdicts({"transfer": _transfer(0.4),
                      "robustness/cnn": _robustness(0.5, (420, 0), noise=None)})["C6"] == "not_measured"
    assert _verdicts({"transfer": _transfer(0.4),
                      "robustness/cnn": _robustness(0.5, (420, 0), transfer_test=None)})["C6"] == "not_measured"
    assert _verdicts({"transfer": _transfer(0.4)})["C6"] == "not_measured"
    # a big drop that is not 3x the noise drop
    assert _verdicts({"transfer": _transfer(0.6),
                      "robustness/cnn": _robustness(0.5, (420, 0), noise=0.75)})["C6"] == "not_supported"


def test_report_collects_stage_metrics_and_costs(tmp_path):
    (tmp_path / "train" / "cnn").mkdir(parents=True)
    (tmp_path / "cost" / "train").mkdir(parents=True)
    (tmp_path / "train" / "cnn" / "metrics.json").write_text(json.dumps({
        "model": "cnn", "arch": "cnn", "params": 10, "n_train": 5, "epochs": 1, "test_accuracy": 0.9,
        "test_accuracy_ci95": [0.85, 0.93], "test_loss": 0.3, "per_class_accuracy": [0.9, 0.9]}))
    (tmp_path / "cost" / "train" / "cnn.json").write_text(json.dumps({"wall_s": 1.5, "cpu_s": 2.0,
                                                                     "peak_rss_mb": 100.0}))
    (tmp_path / "metrics.json").write_text("{}")  # the report's own output is never collected
    summary, claims, headline = build_report(tmp_path)
    assert headline["test_accuracy"] == {"cnn": 0.9}
    assert headline["claims"] == {"supported": 1, "not_supported": 0, "not_measured": 17}
    assert "| cnn | cnn | 10 | 5 | 1 | 90.0 [85.0, 93.0] | 0.3000 | 1.5 | 2.0 | 100 |" in summary
    assert "| train/cnn | 1.5 | 2.0 | 100 |" in summary
    assert "| C3 |" in summary
