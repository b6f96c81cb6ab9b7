"""A real 2-process DistributedDataParallel run on gloo agrees with one process."""

import sys

import pytest
import torch
import torch.multiprocessing as mp

from .dist_worker import train_rank, train_small


@pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32", reason="needs torch.distributed")
@pytest.mark.parametrize("dataset, method", [(False, "pgd_at"), (True, "pgd_at"), (False, "atta"),
                                             (False, "pgd_at+wa")],
                         ids=["tensors", "dataset", "atta", "weight-average"])
def test_two_gloo_processes_agree_with_one(tmp_path, dataset, method):
    """With a Dataset, each process reads only its share of every global batch; ATTA's buffer,
    written by whichever process had the sample, is merged at every epoch end."""
    out = tmp_path / "rank0.pt"
    mp.spawn(train_rank, args=(2, str(tmp_path / "init"), str(out), dataset, method), nprocs=2, join=True)
    result = torch.load(out, weights_only=True)

    model, history = train_small(dataset, method)  # the same run in this one process
    assert history[-1]["loss"] < history[0]["loss"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(result["state"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert [r["loss"] for r in result["history"]] == pytest.approx([r["loss"] for r in history], rel=1e-4)
