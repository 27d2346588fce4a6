"""Two CPU processes (gloo on 127.0.0.1): identical weights on every rank, mask held."""

import pytest
import torch
import torch.distributed as dist
from _train_helpers import make_dataset, make_mlp, pruned_values, random_mask
from torch.utils.data import DataLoader, DistributedSampler

from prunekit.training import TrainConfig, fit, launch_local

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs gloo"),
]


def _work(rank, world_size, out_dir):
    model = make_mlp(seed=rank)  # different inits: DDP must broadcast rank 0's
    mask = random_mask(make_mlp(), 0.9)
    data = make_dataset(128)
    sampler = DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=True, seed=0)
    train = DataLoader(data, batch_size=16, sampler=sampler)
    test = DataLoader(make_dataset(64, seed=1), batch_size=64)
    config = TrainConfig(epochs=2, lr=0.05, weight_decay=5e-4, nesterov=True, progress=False)
    final = fit(model, train, test, config, out_dir / "run", mask=mask)
    torch.save({"state": model.state_dict(), "final": final}, out_dir / f"rank{rank}.pt")


def test_two_processes_keep_identical_weights_and_the_mask(tmp_path):
    launch_local(_work, 2, tmp_path, timeout_s=60)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][name]), name
    assert ranks[0]["final"] == ranks[1]["final"]
    model = make_mlp()
    model.load_state_dict(ranks[1]["state"])
    assert (pruned_values(model, random_mask(make_mlp(), 0.9)) == 0).all()
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 2
    assert (tmp_path / "run" / "final.json").exists()
