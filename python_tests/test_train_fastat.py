"""The FastAT Benchmark's recipe pieces: the onecycle schedule (torch's OneCycleLR as the
benchmark runs it, against a torch OneCycleLR stepped by hand) and its resume rule."""

import pytest
import torch

from robustkernels.data import load_digits
from robustkernels.train import fit, lr_factor, make_method
from robustkernels.train.schedules import make_scheduler

from .models import small_cnn


def test_onecycle_is_torchs_one_cycle_with_momentum_cycled():
    model = torch.nn.Linear(3, 2)
    ours = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    theirs = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1, momentum=0.9)
    scheduler = make_scheduler(ours, "onecycle", 200)
    reference = torch.optim.lr_scheduler.OneCycleLR(theirs, max_lr=0.1, total_steps=200)  # the benchmark's call
    for step in range(200):
        for key in ("lr", "momentum"):
            assert ours.param_groups[0][key] == theirs.param_groups[0][key], (step, key)
        assert ours.param_groups[0]["lr"] / 0.1 == pytest.approx(lr_factor("onecycle", step / 199), abs=0.02)
        ours.step(), theirs.step(), scheduler.step(), reference.step()
    assert lr_factor("onecycle", 0.0) == pytest.approx(1 / 25) and lr_factor("onecycle", 0.3) == pytest.approx(1.0)
    assert lr_factor("onecycle", 1.0) == pytest.approx(1 / 25 / 1e4)


def test_a_onecycle_run_resumes_only_over_its_own_length(tmp_path):
    x, y, _, _ = load_digits()
    path = tmp_path / "c.pt"
    options = dict(batch_size=64, lr=0.05, optimizer="sgd", schedule="onecycle", progress=False, checkpoint_path=path)
    fit(small_cnn(), make_method("standard"), (x[:128], y[:128]), epochs=1, **options)
    with pytest.raises(ValueError, match="schedule='onecycle' spans the whole run"):
        fit(small_cnn(), make_method("standard"), (x[:128], y[:128]), epochs=2, resume=True, **options)
