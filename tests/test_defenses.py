"""Training-time defenses on 8x8 digits: each trainer runs, raises PGD accuracy over a standard
model, and writes a model that ``load_model`` reads."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from advgen.attacks.pgd import PGD
from advgen.defenses.adversarial import FastTraining, TRADESLoss, adversarial_augmentation
from advgen.defenses.monitor import OverfitMonitor
from advgen.defenses.params import DefenseSpec
from advgen.defenses.training import make_loss, train_defense
from advgen.evaluation import predict
from advgen.models import build_model, load_model, save_model
from advgen.training import BatchLoss, fit

EPS = 0.15  # digits pixels are coarse (17 grey levels): a radius where a standard CNN fails
CONFIGS = {
    "augment": {"method": "augment", "eps": EPS},
    "fgsm": {"method": "fgsm", "eps": EPS, "alpha": 0.5},
    "fgsm_rs": {"method": "fgsm_rs", "eps": EPS, "step": 1.25 * EPS},
    "pgd": {"method": "pgd", "eps": EPS, "steps": 5, "step": 2.5 * EPS / 5},
    "trades": {"method": "trades", "eps": EPS, "steps": 5, "step": 2.5 * EPS / 5, "beta": 3.0},
}


def _train(config, data, source=None, epochs=6, seed=0):
    (x, y), (xt, yt) = data
    model = build_model("cnn", (1, 8, 8), 10, generator=torch.Generator().manual_seed(seed), width=16, dropout=0.0)
    res = train_defense(DefenseSpec(**config), model, (x, y), (xt, yt), (x[:128], y[:128]), source=source, epochs=epochs,
                        batch_size=64, lr=3e-3, weight_decay=0.0, num_classes=10,
                        generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"),
                        monitor_steps=5, monitor_drop=0.2, stop_on_collapse=False)
    model.eval()
    return model, res


def _pgd_acc(model, x, y, eps=EPS):
    adv = PGD(model, eps, steps=20, generator=torch.Generator().manual_seed(1))(x, y)
    return float((predict(model, adv) == y).float().mean())


@pytest.fixture(scope="module")
def digits(digits_cnn):
    model, xt, yt, train = digits_cnn
    return model, train, (xt, yt)


@pytest.fixture(scope="module")
def standard(digits):
    """A standard model trained exactly as the defended ones (same loop, epochs and seed)."""
    _, train, test = digits
    model = build_model("cnn", (1, 8, 8), 10, generator=torch.Generator().manual_seed(0), width=16, dropout=0.0)
    fit(model, train, test, epochs=6, batch_size=64, lr=3e-3, weight_decay=0.0, num_classes=10,
        generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    return model.eval()


@pytest.mark.parametrize("method", list(CONFIGS))
def test_each_trainer_raises_pgd_accuracy_and_saves_a_loadable_model(method, digits, standard, tmp_path):
    source, train, (xt, yt) = digits
    model, res = _train(CONFIGS[method], (train, (xt, yt)), source=source)
    base = _pgd_acc(standard, xt, yt)
    robust = _pgd_acc(model, xt, yt)
    clean = float((predict(model, xt) == yt).float().mean())
    assert clean > 0.6, f"{method}: clean accuracy {clean:.2f}"
    if method in ("pgd", "trades", "fgsm_rs"):
        assert robust > base + 0.15, f"{method}: PGD accuracy {robust:.2f} vs standard {base:.2f}"
    else:  # FGSM-based: at least some gain over the standard model on this tiny problem
        assert robust > base, f"{method}: PGD accuracy {robust:.2f} vs standard {base:.2f}"
    assert res.grad_evals > 0 and len(res.fit.history) == 6
    assert "monitor_pgd_acc" in res.fit.history[-1]
    save_model(model, tmp_path, {"arch": "cnn", "arch_kwargs": {"width": 16, "dropout": 0.0}, "in_shape": [1, 8, 8],
                                 "num_classes": 10, "defense": CONFIGS[method]})
    loaded = load_model(tmp_path)
    assert loaded.sidecar["defense"]["method"] == method
    assert torch.equal(predict(loaded, xt), predict(model, xt))


def test_gaussian_training_makes_the_model_noise_robust(digits, standard):
    _, train, (xt, yt) = digits
    model, res = _train({"method": "gaussian", "sigma": 0.5}, (train, (xt, yt)))
    assert res.monitor_grad_evals == 0 and res.collapse_epoch is None
    g = torch.Generator().manual_seed(3)
    noisy = xt + 0.5 * torch.randn(xt.shape, generator=g)
    acc = lambda m: float((predict(m, noisy) == yt).float().mean())
    assert acc(model) > acc(standard) + 0.1


def test_grad_eval_counts_follow_the_methods_costs():
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    model = build_model("cnn", (1, 8, 8), 10, generator=torch.Generator().manual_seed(0), width=8)
    g = torch.Generator().manual_seed(0)
    expected = {"augment": 32, "fgsm": 32 + 64, "fgsm_rs": 32 + 32, "pgd": 5 * 32 + 32, "trades": 5 * 32 + 64,
                "gaussian": 32}
    for method, cost in expected.items():
        cfg = CONFIGS.get(method, {"method": "gaussian", "sigma": 0.1})
        loss_fn = make_loss(DefenseSpec(**cfg), g)
        loss, logits = loss_fn(model, model, x, y)
        assert loss.requires_grad and logits.shape == (32, 10)
        assert loss_fn.grad_evals == cost, method


def test_fgsm_training_is_the_two_term_loss():
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    model = build_model("cnn", (1, 8, 8), 10, generator=torch.Generator().manual_seed(0), width=8, dropout=0.0)
    model.eval()  # no batch statistics: the loss of the joint batch splits exactly
    loss_fn = make_loss(DefenseSpec("fgsm", eps=0.1, alpha=0.3), torch.Generator())
    adv = loss_fn.craft(model, x, y)
    model.eval()
    with torch.no_grad():
        want = 0.3 * F.cross_entropy(model(x), y) + 0.7 * F.cross_entropy(model(adv), y)
    loss_fn2 = make_loss(DefenseSpec("fgsm", eps=0.1, alpha=0.3), torch.Generator())
    got, _ = loss_fn2(_Frozen(model), model, x, y)
    assert abs(float(got) - float(want)) < 1e-5
    assert float((adv - x).abs().max()) <= 0.1 + 1e-6


def test_inner_attacks_stay_in_the_ball_and_are_seeded():
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    model = build_model("cnn", (1, 8, 8), 10, generator=torch.Generator().manual_seed(0), width=8)
    for cls, kw in ((FastTraining, {"eps": 0.1, "step": 0.125}),):
        a = cls(**kw, generator=torch.Generator().manual_seed(5)).craft(model, x, y)
        b = cls(**kw, generator=torch.Generator().manual_seed(5)).craft(model, x, y)
        assert torch.equal(a, b) and float((a - x).abs().max()) <= 0.1 + 1e-6 and a.min() >= 0 and a.max() <= 1
    t = TRADESLoss(0.1, 3, 0.04, 1.0, torch.Generator().manual_seed(0)).craft(model, x)
    assert float((t - x).abs().max()) <= 0.1 + 1e-6


def test_augmentation_adds_correctly_labelled_fgsm_examples(digits):
    source, (x, y), _ = digits
    xa, ya, stats = adversarial_augmentation(source, x[:100], y[:100], EPS)
    assert xa.shape == (200, 1, 8, 8) and torch.equal(ya[:100], y[:100]) and torch.equal(ya[100:], y[:100])
    assert torch.equal(xa[:100], x[:100])
    assert float((xa[100:] - x[:100]).abs().max()) <= EPS + 1e-6
    assert 0.2 < stats["source_fooled_rate"] <= 1.0  # they are adversarial for the source


def test_monitor_flags_a_collapse():
    """A model whose PGD accuracy on the monitor set falls by more than ``drop`` is flagged."""
    x, y = torch.rand(20, 1, 8, 8), torch.zeros(20, dtype=torch.long)

    class Switch(torch.nn.Module):  # robust (always class 0) until switched to always class 1
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.broken = False

        def forward(self, z):
            logits = torch.zeros(len(z), 10) + self.w * z.flatten(1).sum(1, keepdim=True)
            logits[:, 1 if self.broken else 0] += 5
            return logits
    model = Switch()
    mon = OverfitMonitor(x, y, eps=0.1, steps=2, drop=0.2, stop=True, generator=torch.Generator())
    row, stop = mon(1, model)
    assert row["monitor_pgd_acc"] == 1.0 and not row["collapse"] and not stop
    model.broken = True
    row, stop = mon(2, model)
    assert row["monitor_pgd_acc"] == 0.0 and row["collapse"] and stop and mon.collapse_epoch == 2


def test_fit_stops_when_the_hook_says_so():
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    model = build_model("mlp", (1, 8, 8), 10, generator=torch.Generator().manual_seed(0))
    calls = []

    def hook(epoch, m):
        calls.append(epoch)
        return {"extra": epoch * 10}, epoch == 2
    res = fit(model, (x, y), (x, y), epochs=5, batch_size=32, lr=1e-3, weight_decay=0.0, num_classes=10,
              generator=torch.Generator().manual_seed(0), device=torch.device("cpu"), loss_fn=BatchLoss(),
              after_epoch=hook)
    assert calls == [1, 2] and [r["extra"] for r in res.history] == [10, 20]
    assert res.grad_evals == 2 * 64


def test_sidecar_json_names_the_defense(tmp_path):
    model = build_model("logreg", (1, 8, 8), 10)
    save_model(model, tmp_path, {"arch": "logreg", "arch_kwargs": {}, "in_shape": [1, 8, 8], "num_classes": 10,
                                 "defense": {"method": "pgd", "eps": 0.1, "steps": 7, "step": 0.025, "base": "cnn"}})
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["defense"]["method"] == "pgd" and meta["defense"]["base"] == "cnn"


class _Frozen(torch.nn.Module):
    """Keeps the wrapped model in eval mode when a loss calls ``.train()`` (exact loss arithmetic)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, z):
        self.m.eval()
        return self.m(z)


def test_trades_is_ce_plus_beta_kl_clean_to_adversarial():
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    model = build_model("cnn", (1, 8, 8), 10, generator=torch.Generator().manual_seed(0), width=8, dropout=0.0).eval()
    loss_fn = TRADESLoss(0.1, 3, 0.04, 2.5, torch.Generator().manual_seed(0))
    got, adv_logits = loss_fn(_Frozen(model), model, x, y)
    adv = TRADESLoss(0.1, 3, 0.04, 2.5, torch.Generator().manual_seed(0)).craft(model, x)
    with torch.no_grad():
        p, q = F.softmax(model(x), 1), F.softmax(model(adv), 1)
        kl = (p * (p.log() - q.log())).sum(1).mean()  # KL(clean || adversarial), per example
        want = F.cross_entropy(model(x), y) + 2.5 * kl
    assert abs(float(got) - float(want)) < 1e-5 and float(kl) > 0
    assert torch.allclose(adv_logits, model(adv), atol=1e-5)


@pytest.mark.parametrize("method", ["fgsm", "fgsm_rs", "pgd", "trades"])
def test_inner_attacks_leave_batchnorm_statistics_alone_and_train_mode_on(method):
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    model = build_model("cnn", (1, 8, 8), 10, generator=torch.Generator().manual_seed(0), width=8)
    bn = model.features[1]
    before = bn.running_mean.clone()
    loss_fn = make_loss(DefenseSpec(**CONFIGS[method]), torch.Generator().manual_seed(0))
    model.train()
    if method == "trades":
        loss_fn.craft(model, x)
    else:
        loss_fn.craft(model, x, y)
    assert torch.equal(bn.running_mean, before)  # crafted in eval mode
    loss_fn(model, model, x, y)
    assert model.training and not torch.equal(bn.running_mean, before)  # the update batch is in train mode
