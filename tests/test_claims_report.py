"""Claims registry and report rendering."""
import json
import math

from advgen.claims import CLAIMS, VERDICTS, c3_worked_example, claims_table
from advgen.report import build_report


def test_c3_is_the_lecture_example():
    r = c3_worked_example()
    assert r["w_norm2_sq"] == 28 and r["logit_before"] == -4
    assert round(r["before"], 3) == 0.018 and round(r["after_eps_w"], 2) == 0.83
    assert math.isclose(r["after_eps_w"], 1 / (1 + math.exp(-1.6)))


def test_every_claim_has_a_row():
    rows = claims_table({})
    assert [r["id"] for r in rows] == [f"C{i}" for i in range(1, 19)] == list(CLAIMS)
    assert all(r["verdict"] in VERDICTS for r in rows)
    assert {r["id"]: r["verdict"] for r in rows}["C3"] == "supported"
    assert set(rows[0]) == {"id", "claim", "experiment", "measured", "criterion", "verdict"}


def test_report_collects_stage_metrics(tmp_path):
    (tmp_path / "train" / "cnn").mkdir(parents=True)
    (tmp_path / "train" / "cnn" / "metrics.json").write_text(json.dumps({
        "model": "cnn", "arch": "cnn", "params": 10, "n_train": 5, "epochs": 1, "test_accuracy": 0.9,
        "test_loss": 0.3, "per_class_accuracy": [0.9, 0.9]}))
    (tmp_path / "train" / "cnn" / "cost.json").write_text(json.dumps({"wall_s": 1.5, "cpu_s": 2.0,
                                                                     "peak_rss_mb": 100.0}))
    summary, claims, headline = build_report(tmp_path)
    assert headline["test_accuracy"] == {"cnn": 0.9}
    assert headline["claims"]["supported"] >= 1
    assert "| cnn | cnn | 10 | 5 | 1 | 90.00 | 0.3000 | 1.5 | 2.0 | 100 |" in summary
    assert "| C3 |" in summary
