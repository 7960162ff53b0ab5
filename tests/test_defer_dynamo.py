"""utils.defer_dynamo: stage processes skip torch._dynamo's import (1.1-1.5 s) that torch.optim
triggers only for eager no-ops, with the optimizers' arithmetic unchanged. Run in fresh
processes: the stand-in changes sys.modules."""
from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, sys, torch
if sys.argv[1] == "defer":
    from advgen.utils import defer_dynamo
    defer_dynamo()
g = torch.Generator().manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.randn(p.shape, generator=g))
opts = [torch.optim.Adam(model.parameters(), 1e-2), torch.optim.SGD(model.parameters(), 1e-2, momentum=0.9)]
x = torch.randn(16, 4, generator=g)
for opt in opts:
    for _ in range(3):
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
stub = type(sys.modules.get("torch._dynamo")).__name__
out = {"weights": [p.detach().flatten().tolist() for p in model.parameters()], "module": stub}
if sys.argv[2] == "touch":  # anything beyond eager's two calls loads the real module
    out["config"] = type(torch._dynamo.config).__name__
    out["module_after"] = type(sys.modules["torch._dynamo"]).__name__
print(json.dumps(out))
"""


def _run(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_optimizers_step_identically_without_loading_dynamo():
    real, deferred = _run("real", "-"), _run("defer", "-")
    assert real["module"] == "module"  # torch.optim did load the real torch._dynamo
    assert deferred["module"] == "_DeferredDynamo"  # ... which the stand-in avoided
    assert deferred["weights"] == real["weights"]


def test_any_other_use_loads_the_real_module():
    out = _run("defer", "touch")
    assert out["module"] == "_DeferredDynamo" and out["module_after"] == "module"
    assert out["config"] == "ConfigModuleInstance"  # torch._dynamo.config, the real one


def test_a_submodule_import_loads_the_real_package_once():
    code = ("import sys, torch\nfrom advgen.utils import defer_dynamo\ndefer_dynamo()\n"
            "import torch._dynamo.config as c\nimport torch._dynamo as d\n"
            "print(type(sys.modules['torch._dynamo']).__name__, d is sys.modules['torch._dynamo'],"
            " type(c).__name__, sys.modules['torch._dynamo.config'] is c)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["module", "True", "ConfigModuleInstance", "True"]
