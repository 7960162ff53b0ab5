"""Training learns, is deterministic, and its metrics are right."""
import torch

from advgen.data import load_digits_splits, to_float
from advgen.models import build_model
from advgen.training import evaluate, fit


def _digits():
    s = load_digits_splits()
    to = lambda a: torch.from_numpy(a)  # noqa: E731
    return ((to_float(to(s["train"][0])), to(s["train"][1]).long()),
            (to_float(to(s["test"][0])), to(s["test"][1]).long()))


def _fit(arch, seed=0):
    torch.manual_seed(seed)
    train, test = _digits()
    model = build_model(arch, (1, 8, 8), 10)
    res = fit(model, train, test, epochs=3, batch_size=64, lr=3e-3, weight_decay=0.0, num_classes=10,
              generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"))
    return model, res


def test_mlp_learns_digits():
    _, res = _fit("mlp")
    assert res.metrics["accuracy"] > 0.85
    assert [r["epoch"] for r in res.history] == [1, 2, 3]
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_same_seed_same_weights():
    a, ra = _fit("cnn")
    b, rb = _fit("cnn")
    assert ra.history == rb.history
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_evaluate_per_class():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, 5.0, 0.0]))  # always predicts class 1
    x, y = torch.zeros(6, 1, 2, 2), torch.tensor([0, 1, 1, 2, 1, 0])
    ev = evaluate(model, x, y, 3, torch.device("cpu"))
    assert ev["accuracy"] == 0.5 and ev["per_class_accuracy"] == [0.0, 1.0, 0.0]
