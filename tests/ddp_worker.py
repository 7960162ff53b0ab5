"""One rank of tests/test_ddp.py's multi-node check, run by torchrun (or alone, as the reference).

Trains a small dropout-free MLP for two epochs with :func:`advgen.training.fit` on fixed data;
global rank 0 writes the weights to ``argv[1]``. Under torchrun, :func:`advgen.training.setup`
joins the process group from torchrun's environment, whatever the number of nodes.
"""
import sys

import torch
from safetensors.torch import save_file
from torch import nn

from advgen.training import fit, setup


def main(out: str) -> None:
    rank, device = setup(1, "cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(512, 1, 8, 8, generator=gen)  # (N, C, H, W)
    y = (x.mean((1, 2, 3)) * 40).long() % 4  # (N,) a learnable labelling
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    with torch.no_grad():  # the same start in every process, from the generator (not torch's global RNG)
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    fit(model, (x, y), (x[:64], y[:64]), epochs=2, batch_size=64, lr=1e-2, weight_decay=0.0, num_classes=4,
        generator=torch.Generator().manual_seed(1), device=device)
    if rank == 0:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
