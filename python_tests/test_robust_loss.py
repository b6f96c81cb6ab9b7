"""RobustLoss: a method's loss inside a loop the user owns trains as fit() does (same losses and
weights on a fixed seed), accepts DDP-wrapped models, honours autocast, and refuses what it cannot
do correctly in one line."""

import copy
import os
import socket

import pytest
import torch
from torch import nn

from robustkernels.data import load_digits
from robustkernels.train import RobustLoss, fit, make_method
from robustkernels.train.seeds import mix_seed

EPS = 0.1


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 8 * 8, 10))


@pytest.fixture(scope="module")
def digits():
    x, y, _, _ = load_digits()
    return x[:96], y[:96]


def _own_loop(model, loss_fn, x, y, *, epochs, batch_size, seed, lr=0.05):
    """The plain PyTorch loop a user writes, in fit's data order (a restatement of its randperm)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    losses = []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))
        for b in range(0, len(x), batch_size):
            index = order[b:b + batch_size]
            model.train()
            result = loss_fn(x[index], y[index], index=index)
            optimizer.zero_grad()
            result.loss.backward()
            optimizer.step()
            losses.append(result.loss.item())
    return losses


@pytest.mark.parametrize("name, kwargs", [("pgd-at", {"steps": 3}), ("trades", {"steps": 2}), ("n-fgsm", {}),
                                          ("fgsm-pgi", {})])
def test_trains_as_fit_does(digits, name, kwargs):
    """Same seed, same batches: the same losses at every step and the same final weights as fit
    (the attack's random draws at call k are fit's step k; fit's global reseeding per step does
    not matter to a model without dropout / LWTA / PNI)."""
    x, y = digits
    fitted, own = _net(), _net()
    recorded = []
    fit(fitted, make_method(name, eps=EPS, **kwargs), (x, y), epochs=2, batch_size=32, lr=0.05, seed=4,
        schedule="constant", progress=False, callback=lambda r: recorded.append(r["loss"]))
    loss_fn = RobustLoss(own, name, eps=EPS, seed=4, dataset_size=len(x), **kwargs)
    losses = _own_loop(own, loss_fn, x, y, epochs=2, batch_size=32, seed=4)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(recorded), rtol=1e-5, atol=1e-6)
    for a, b in zip(fitted.state_dict().values(), own.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ddp_wrapped_model_trains_as_the_unwrapped_one(digits):
    """DDP (one gloo process): the attack runs on the module underneath (it must not sync
    gradients), the training step through the wrapper; losses equal the plain model's."""
    import torch.distributed as dist

    x, y = digits
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        plain, wrapped = _net(), nn.parallel.DistributedDataParallel(_net())
        expected = _own_loop(plain, RobustLoss(plain, "pgd-at", eps=EPS, steps=2, seed=1), x, y, epochs=1,
                             batch_size=32, seed=1)
        got = _own_loop(wrapped, RobustLoss(wrapped, "pgd-at", eps=EPS, steps=2, seed=1), x, y, epochs=1,
                        batch_size=32, seed=1)
    finally:
        dist.destroy_process_group()
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_autocast_and_a_scaler(digits):
    """bf16 autocast on the training forward, a user's GradScaler on the returned loss."""
    x, y = digits
    model = _net()
    scaler = torch.amp.GradScaler("cpu")
    loss_fn = RobustLoss(model, "grad-align", eps=EPS, autocast="bf16", scaler=scaler)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    before = copy.deepcopy(model.state_dict())
    result = loss_fn(x[:32], y[:32])
    scaler.scale(result.loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert result.logits.dtype == torch.bfloat16 and torch.isfinite(result.loss)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_eps_warmup_follows_the_progress_given(digits):
    x, y = digits
    loss_fn = RobustLoss(_net(), "pgd-at", eps=EPS, steps=2, eps_warmup_epochs=2)
    loss_fn(x[:16], y[:16], progress=(0.5, 4))
    assert loss_fn.method.eps == pytest.approx(EPS / 4)
    loss_fn(x[:16], y[:16], progress=(3.0, 4))
    assert loss_fn.method.eps == pytest.approx(EPS)


@pytest.mark.parametrize("call, match", [
    (lambda m: RobustLoss(m, "free-at", eps=EPS), "own optimizer steps"),
    (lambda m: RobustLoss(m, "pgd-at", autocast="fp8"), "autocast"),
    (lambda m: RobustLoss(m, make_method("pgd-at"), eps=EPS), "Method already"),
    (lambda m: RobustLoss(m, "pgd-at", kl_weight=1.0), "dataset_size"),
    (lambda m: RobustLoss(m, "no-such-method"), "method must be one of"),
    (lambda m: RobustLoss("model", "pgd-at"), "nn.Module"),
    (lambda m: RobustLoss(m, "pgd-at", eps=EPS, eps_warmup_epochs=1)(torch.rand(2, 1, 8, 8), torch.tensor([1, 2])),
     "progress"),
    (lambda m: RobustLoss(m, "pgd-at", eps=EPS)(torch.rand(2, 1, 8, 8), torch.tensor([1.0, 2.0])), "int64"),
    (lambda m: RobustLoss(m, "fgsm-pgi", eps=EPS)(torch.rand(2, 1, 8, 8), torch.tensor([1, 2])), "index"),
], ids=["free-at", "autocast", "method twice", "kl", "name", "model", "warm-up", "labels", "index"])
def test_refusals_name_the_argument(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call(_net())
