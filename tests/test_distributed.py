"""DistributedDataParallel (gloo, 2 processes on this machine) trains a converted model to the
same weights as the same steps in one process on the concatenated batch."""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from authors_eca import ECABasicBlock, eca_layer
from torch import nn

import eca_cuda

WORLD_SIZE = 2
STEPS = 3


def make_model():
    """Convolutions, the authors' ECA layers and one ECABasicBlock (its tail fused), converted
    by convert_eca; batch norm in eval mode, as its batch statistics would differ between
    per-process and whole batches."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        eca_layer(16, k_size=3),
        nn.ReLU(),
        ECABasicBlock(16, 16),
        nn.Conv2d(16, 32, 3, padding=1, stride=2),
        eca_layer(32, k_size=5),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    model = eca_cuda.convert_eca(model)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    return model


def batches():
    gen = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(2 * WORLD_SIZE, 3, 12, 12, generator=gen),
            torch.randint(0, 10, (4,), generator=gen),
        )
        for _ in range(STEPS)
    ]


def train(model, steps, shard=None):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, target in steps:
        if shard is not None:  # this rank's half of the batch
            x, target = x.chunk(WORLD_SIZE)[shard], target.chunk(WORLD_SIZE)[shard]
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), target).backward()
        optimizer.step()


def worker(rank, init_file, out_file):
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE
    )
    torch.set_num_threads(1)
    model = nn.parallel.DistributedDataParallel(make_model())
    train(model, batches(), shard=rank)
    if rank == 0:
        torch.save(model.module.state_dict(), out_file)
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_ddp_matches_single_process():
    model = make_model()
    assert sum(isinstance(m, eca_cuda.ECA) for m in model.modules()) == 3
    assert getattr(type(model[3]), "eca_tail_fused", False)
    with tempfile.TemporaryDirectory() as tmp:
        out_file = os.path.join(tmp, "ddp.pt")
        mp.spawn(worker, args=(os.path.join(tmp, "init"), out_file), nprocs=WORLD_SIZE)
        ddp_state = torch.load(out_file)
    single = make_model()
    train(single, batches())
    start = make_model().state_dict()
    for name, value in single.state_dict().items():
        if "running" in name or "num_batches" in name:  # eval-mode batch norm: fixed
            continue
        assert not torch.equal(value, start[name]), f"{name} did not train"
        torch.testing.assert_close(ddp_state[name], value, rtol=1e-5, atol=1e-6, msg=name)
