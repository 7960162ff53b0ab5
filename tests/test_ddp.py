"""The train stage under torchrun: 2 processes, gloo on CPU; only rank 0 writes."""
import json
import platform
import subprocess
import sys
from pathlib import Path

import yaml

from advgen.cli import copy_repo, venv_env
from advgen.models import load_model
from tests.conftest import ROOT


def test_train_stage_with_two_processes(tmp_path: Path):
    copy_repo(ROOT, tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["profile"] = "smoke"
    params["device"] = "cpu"
    params["ingest"]["dataset"] = "digits"
    params["train"]["nproc"] = 2
    params["profiles"]["smoke"]["train"].update(epochs=3, n_train=0, n_test=0, batch_size=64)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    # validate first: it rewrites each stage's params file, which a stage checks against params.yaml
    for cmd in (["stages/validate.py"], ["stages/ingest.py"], ["stages/train.py", "mlp"]):
        proc = subprocess.run([sys.executable, *cmd], cwd=tmp_path, env=venv_env(), capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    model = load_model(tmp_path / "models" / "mlp")
    assert model.sidecar["nproc"] == 2 and model.sidecar["in_shape"] == [1, 8, 8]
    metrics = json.loads((tmp_path / "reports/train/mlp/metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8, metrics
    cost = json.loads((tmp_path / "reports/cost/train/mlp.json").read_text())
    assert set(cost) == {"wall_s", "cpu_s", "peak_rss_mb", "env"}
    import torch

    assert cost["env"] == {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                           "threads": cost["env"]["threads"], "device": "cpu", "machine": platform.machine()}
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["mlp"]  # no temp folders left
    assert (tmp_path / "reports/train/mlp/curve.tsv").read_text().count("\n") == 4


def _gan_pair_and_step(loss: str):
    import torch

    from advgen.generative.gan import GANStep
    from advgen.generative.models import build_pair

    # D without BatchNorm: with it, each rank normalises over its own share of the batch (as DDP
    # without SyncBatchNorm does), which is not the whole batch's step; docs/pipeline.md (Scale-out) says so
    g, d = build_pair(8, 1, 8, torch.Generator().manual_seed(0), "none")
    g.eval()  # BatchNorm on its running statistics: a sample's output does not depend on its batch-mates
    step = GANStep(g, d, loss, torch.optim.SGD(g.parameters(), 0.1), torch.optim.SGD(d.parameters(), 0.1),
                   torch.Generator().manual_seed(1), 10.0)
    real = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    return g, d, step, real


def _gan_state(g, d) -> dict:
    return {k: v.contiguous() for k, v in [*g.state_dict().items(), *(("d." + k, v) for k, v in d.state_dict().items())]}


def _gan_rank(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    g, d, step, real = _gan_pair_and_step("non_saturating")
    step.d_step(real[rank::world], 16)
    step.g_step(16)
    save_file(_gan_state(g, d), f"{out}/rank{rank}.safetensors")
    dist.destroy_process_group()


def test_gan_step_is_data_parallel_over_two_processes(tmp_path: Path):
    """Two gloo ranks, each on its half of the batch (and its half of the codes), take exactly
    the step one process takes on the whole batch: gradients are averaged over the ranks."""
    import torch
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    init = f"file://{tmp_path}/rendezvous"
    mp.spawn(_gan_rank, args=(2, init, str(tmp_path)), nprocs=2, join=True)
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    g, d, step, real = _gan_pair_and_step("non_saturating")
    step.d_step(real, 16)
    step.g_step(16)
    single = _gan_state(g, d)
    before = _gan_state(*_gan_pair_and_step("non_saturating")[:2])
    for key in single:
        assert torch.allclose(a[key], single[key], atol=1e-6) and torch.allclose(b[key], single[key], atol=1e-6), key
    assert any(not torch.equal(single[k], before[k]) for k in single)  # the step did move the weights


def _diffusion_step(rank: int = 0, world: int = 1):
    import torch

    from advgen.generative.diffusion import DiffusionStep, alphas_cumprod
    from advgen.generative.diffusion_run import seeded_init
    from advgen.generative.unet import UNet

    net = seeded_init(lambda: UNet(1, 8, (1, 2), 10, emb_dim=32), torch.Generator().manual_seed(0))
    step = DiffusionStep(net, alphas_cumprod("linear", 50), torch.optim.SGD(net.parameters(), 0.1),
                         torch.Generator().manual_seed(1), 0.3, rank=rank, world=world)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.arange(16) % 10
    return net, step, x, y


def _diffusion_rank(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    net, step, x, y = _diffusion_step(rank, world)
    step(x[rank::world], y[rank::world], 16)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, f"{out}/rank{rank}.safetensors")
    dist.destroy_process_group()


def test_diffusion_step_is_data_parallel_over_two_processes(tmp_path: Path):
    """Two gloo ranks, each on its half of the batch (its half of t, the noise and the dropped
    labels), take exactly the step one process takes on the whole batch."""
    import torch
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    mp.spawn(_diffusion_rank, args=(2, f"file://{tmp_path}/rendezvous", str(tmp_path)), nprocs=2, join=True)
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    net, step, x, y = _diffusion_step()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    step(x, y, 16)
    for key, v in net.state_dict().items():
        assert torch.allclose(a[key], v, atol=1e-6) and torch.allclose(b[key], v, atol=1e-6), key
    assert any(not torch.equal(v, before[k]) for k, v in net.state_dict().items())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_loopback_take_the_single_process_steps(tmp_path: Path):
    """``torchrun --nnodes 2`` as a cluster would run it, one launcher per node (both on
    127.0.0.1 here), two gloo ranks each: four ranks train exactly what one process trains
    (each rank its stride of every global batch, gradients averaged), and only global rank 0
    writes."""
    import torch
    from safetensors.torch import load_file

    worker = str(ROOT / "tests" / "ddp_worker.py")
    port = _free_port()
    env = {**venv_env(), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    logs = [tmp_path.parent / f"{tmp_path.name}_node{k}.log" for k in (0, 1)]  # files: a full pipe cannot block
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={k}",
                               "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={port}",
                               worker, str(tmp_path / f"node{k}.safetensors")],
                              env=env, stdout=logs[k].open("w"), stderr=subprocess.STDOUT)
             for k in (0, 1)]
    try:
        for node, log in zip(nodes, logs):
            node.wait(timeout=240)
            assert node.returncode == 0, log.read_text()[-3000:]
    finally:
        for node in nodes:  # never leave a launcher (and its ranks) behind
            if node.poll() is None:
                node.kill()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node0.safetensors"]  # rank 0 of node 0 alone wrote
    subprocess.run([sys.executable, worker, str(tmp_path / "one.safetensors")], env=env, check=True, timeout=240)
    four, one = load_file(tmp_path / "node0.safetensors"), load_file(tmp_path / "one.safetensors")
    assert four.keys() == one.keys()
    for k in one:
        torch.testing.assert_close(four[k], one[k], rtol=0, atol=1e-5, msg=k)
