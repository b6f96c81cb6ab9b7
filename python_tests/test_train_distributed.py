"""A real 2-process DistributedDataParallel run on gloo agrees with one process."""

import sys

import pytest
import torch
import torch.multiprocessing as mp

from robustkernels.data import load_digits
from robustkernels.train import fit, make_method

from .dist_worker import train_rank
from .models import small_cnn


@pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32", reason="needs torch.distributed")
def test_two_gloo_processes_agree_with_one(tmp_path):
    out = tmp_path / "rank0.pt"
    mp.spawn(train_rank, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    result = torch.load(out, weights_only=False)

    x, y, _, _ = load_digits()
    torch.manual_seed(0)
    model = small_cnn()
    history = fit(model, make_method("pgd_at", eps=0.1, steps=3, random_start=False), (x[:256], y[:256]),
                  epochs=2, batch_size=64, lr=0.05, optimizer="sgd", progress=False)
    assert history[-1]["loss"] < history[0]["loss"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(result["state"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert [r["loss"] for r in result["history"]] == pytest.approx([r["loss"] for r in history], rel=1e-4)
