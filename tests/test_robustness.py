"""Worst case, query budgets, sanity checks, stage configs and stage-level bad input."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

from advgen.attacks import AttackError
from advgen.config import ConfigError
from advgen.params import load_attack_config
from advgen.robustness import build_attack, sanity_checks, success_vs_budget, worst_case
from tests.conftest import ROOT


def test_worst_case_needs_every_attack_to_fail():
    a = ([0.0, 0.1], torch.tensor([[1, 1, 1, 0], [1, 0, 1, 0]], dtype=torch.bool))
    b = ([0.1], torch.tensor([[0, 1, 1, 0]], dtype=torch.bool))
    assert worst_case({"a": a, "b": b}, [0.0, 0.1]) == {0.0: 0.75, 0.1: 0.25}


def test_success_vs_budget():
    q = [0, 1, 5, 50, -1, 200]  # 0: already wrong clean; -1: never fooled
    clean = torch.tensor([0, 1, 1, 1, 1, 1], dtype=torch.bool)
    assert success_vs_budget(q, clean, [1, 10, 100, 1000]) == {1: 0.2, 10: 0.4, 100: 0.6, 1000: 0.8}


def _checks(**over):
    kw = dict(clean_acc=0.9, check_eps=0.1,
              curves={"fgsm": {0.0: 0.9, 0.1: 0.5}, "pgd": {0.0: 0.9, 0.1: 0.2}, "noise": {0.0: 0.9, 0.1: 0.85}},
              pgd_variants={"PGD-20x1": 0.2, "PGD-100x1": 0.19, "PGD-100x3": 0.18},
              black_box={"square": (0.4, 0.2)}, unbounded_acc=0.0, deterministic=True)
    kw.update(over)
    return {c.name: c.passed for c in sanity_checks(**kw)}


def test_sanity_checks_pass_on_a_sound_evaluation():
    assert all(_checks().values())


@pytest.mark.parametrize("over, failing", [
    (dict(curves={"fgsm": {0.0: 0.8, 0.1: 0.5}, "pgd": {0.0: 0.8, 0.1: 0.2}}),
     {"eps0_equals_clean[fgsm]", "eps0_equals_clean[pgd]"}),
    (dict(curves={"fgsm": {0.0: 0.9, 0.1: 0.95}, "pgd": {0.0: 0.9, 0.1: 0.2}}),
     {"robust_le_clean[fgsm]", "monotone_in_eps[fgsm]"}),
    (dict(curves={"pgd": {0.0: 0.9, 0.1: 0.2, 0.2: 0.3}}), {"monotone_in_eps[pgd]"}),
    (dict(curves={"fgsm": {0.0: 0.9, 0.1: 0.1}, "pgd": {0.0: 0.9, 0.1: 0.2}}), {"pgd_le_fgsm"}),
    (dict(pgd_variants={"PGD-20x1": 0.2, "PGD-100x1": 0.25}), {"more_steps_or_restarts_never_help_accuracy"}),
    (dict(black_box={"square": (0.1, 0.2)}), {"black_box_not_stronger[square]"}),
    (dict(curves={"pgd": {0.0: 0.9, 0.1: 0.2}, "noise": {0.0: 0.9, 0.1: 0.3}}), {"noise_much_weaker_than_pgd"}),
    (dict(unbounded_acc=0.01), {"unbounded_pgd_reaches_zero"}),
    (dict(deterministic=False), {"logits_deterministic"}),
])
def test_each_sanity_check_catches_its_violation(over, failing):
    checks = _checks(**over)
    assert {name for name, ok in checks.items() if not ok} == failing


def _params(**attack):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["attack"].update(attack)
    return params


def test_attack_config_validation():
    assert load_attack_config(_params()).eps_linf[0] == 0.0
    with pytest.raises(ConfigError, match=r"'attack.eps_linf' must hold eps >= 0, found \[-0.1\]"):
        load_attack_config(_params(eps_linf=[0.0, -0.1, 0.1]))
    with pytest.raises(ConfigError, match=r"unknown attack\(s\) \['cw'\]"):
        load_attack_config(_params(attacks=["fgsm", "cw"]))
    with pytest.raises(ConfigError, match="unknown key"):
        load_attack_config(_params(epsilon=0.3))
    with pytest.raises(AttackError, match="unknown attack 'cw'"):
        build_attack("cw", torch.nn.Linear(1, 1), 0.1, {}, torch.Generator())


def test_attack_stage_reports_a_missing_model(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    proc = subprocess.run([sys.executable, str(ROOT / "stages/attack.py"), "cnn", "fgsm"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "models/cnn/model.json: not found; models are written by the train stage" in proc.stderr
    assert not (tmp_path / "reports").exists()
