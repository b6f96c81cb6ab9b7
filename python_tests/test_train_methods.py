"""The fast training methods (N-FGSM, ATTA, FAT), the eps warm-up and the catastrophic-overfitting
guard: each against its definition, on the bundled digits."""

import warnings

import pytest
import torch
from torch import nn

from robustkernels.data import CropFlip, load_digits
from robustkernels.models import build_model
from robustkernels.ops.pgd import random_init
from robustkernels.train import fit, make_method
from robustkernels.train.methods import StepContext
from robustkernels.train.overfit import overfit_message

from .helpers import assert_resumes_exactly

EPS = 0.1


@pytest.fixture(scope="module")
def digits():
    x_train, y_train, x_test, y_test = load_digits()
    return (x_train, y_train), (x_test, y_test)


def _fit(model, method, data, **kwargs):
    options = dict(epochs=2, batch_size=64, lr=3e-3, optimizer="adam", schedule="constant", weight_decay=0.0,
                   progress=False)
    return fit(model, method, data, **{**options, **kwargs})


def _record_attacks(method):
    """Wrap ``method.run_attack`` to keep every (x, x_adv) pair it produces."""
    pairs, original = [], method.run_attack

    def recording(attack, x, y):
        x_adv = original(attack, x, y)
        pairs.append((x.detach().clone(), x_adv.detach().clone()))
        return x_adv

    method.run_attack = recording
    return pairs


@pytest.mark.parametrize("name, limit", [("atta", 1.0), ("fat", 1.0), ("n_fgsm", 3.0)])
def test_perturbations_stay_in_their_ball_and_the_bounds(name, limit, digits):
    (x, y), _ = digits
    torch.manual_seed(0)
    method = make_method(name, eps=EPS)
    pairs = _record_attacks(method)
    _fit(build_model("cnn", in_channels=1, image_size=8), method, (x[:256], y[:256]))
    assert len(pairs) == 8
    for x_nat, x_adv in pairs:
        assert (x_adv - x_nat).abs().max() <= limit * EPS + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1
    if name == "n_fgsm":  # no projection: the perturbation goes beyond eps, as defined
        assert max(float((a - n).abs().max()) for n, a in pairs) > 1.5 * EPS


def test_n_fgsm_is_noise_then_one_unclipped_step():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(5, 1, 4, 4) * 0.5 + 0.25, torch.tensor([0, 1, 2, 0, 1])  # away from the bounds
    method = make_method("n_fgsm", eps=0.05)
    method.bind(net, 5)
    method.generator.manual_seed(7)
    got = method.perturbed(x, y)
    start = random_init(x, 0.1, "linf", (0.0, 1.0), generator=torch.Generator().manual_seed(7))
    grad_sign = torch.func.grad(lambda z: nn.functional.cross_entropy(net(z), y, reduction="sum"))(start).sign()
    torch.testing.assert_close(got, (start + 0.05 * grad_sign).clamp(0, 1))
    assert (got - x).abs().max() > 0.1  # noise up to 2 eps plus a step of eps: beyond eps
    assert (start - x).abs().max() <= 0.1 + 1e-6


def test_crop_flip_round_trip_on_a_hand_made_4x4_example():
    image = torch.arange(16.0).view(1, 1, 4, 4)
    aug = CropFlip(padding=1, dy=torch.tensor([2]), dx=torch.tensor([0]), flipped=torch.tensor([True]))
    # padded 6x6, rows 2..5 and columns 0..3, then a horizontal flip
    expected = torch.tensor([[[[6.0, 5, 4, 0], [10, 9, 8, 0], [14, 13, 12, 0], [0, 0, 0, 0]]]])
    assert torch.equal(aug(image), expected)
    padded = torch.full((1, 1, 6, 6), -1.0)
    aug.write_back(padded, expected * 10)
    # the crop window (rows 2..5, columns 0..3) now holds the un-flipped values, the rest is kept
    assert torch.equal(padded[0, 0, 2:6, 0:4], torch.tensor([[0.0, 40, 50, 60], [0, 80, 90, 100],
                                                             [0, 120, 130, 140], [0, 0, 0, 0]]))
    assert (padded[0, 0, :2] == -1).all() and (padded[0, 0, :, 4:] == -1).all()
    assert torch.equal(aug.from_padded(padded), expected * 10)


def test_atta_buffer_follows_each_sample_and_resets_on_schedule():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    method = make_method("atta", eps=0.2, reset_every=3)
    method.bind(net, 10)
    x, y = torch.rand(2, 1, 4, 4) * 0.5 + 0.25, torch.tensor([0, 2])
    index = torch.tensor([7, 3])
    first = CropFlip(1, dy=torch.tensor([0, 2]), dx=torch.tensor([1, 2]), flipped=torch.tensor([False, True]))
    x_adv = method.perturbed(first(x), y, StepContext(index=index, augment=first))
    delta = x_adv - first(x)
    # the next epoch sees the samples under another crop and flip: the stored perturbation is
    # the written one moved with the image
    second = CropFlip(1, dy=torch.tensor([1, 1]), dx=torch.tensor([1, 0]), flipped=torch.tensor([True, False]))
    stored = method.stored(second(x), StepContext(index=index, augment=second))
    padded = torch.zeros(2, 1, 6, 6)
    first.write_back(padded, delta)
    torch.testing.assert_close(stored, second.from_padded(padded + method.buffer[index] * (padded == 0)))
    written = method.buffer[index].clone()
    method.start_epoch(2, 9)
    assert torch.equal(method.buffer[index], written)
    method.start_epoch(3, 9)  # every reset_every epochs the buffer starts again from 0.001 N(0, 1)
    assert not torch.equal(method.buffer[index], written)
    assert method.buffer.abs().max() < 0.006 and 0.0009 < float(method.buffer.std()) < 0.0011


def test_fat_stops_a_sample_tau_steps_after_it_is_fooled_and_never_forwards_it_again():
    torch.manual_seed(0)
    sizes = []

    class Recording(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            sizes.append(len(x))
            return self.linear(x)

    net = Recording()
    with torch.no_grad():
        net.linear.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        net.linear.bias.zero_()
    x = torch.tensor([[0.2, 0.8, 0.5, 0.5], [0.9, 0.1, 0.5, 0.5], [0.6, 0.5, 0.5, 0.5]])
    y = torch.tensor([0, 0, 0])  # sample 0 is misclassified from the start, 2 after a step or two
    method = make_method("fat", eps=0.3, alpha=0.05, steps=6, tau=0)
    method.bind(net, 3)
    x_adv = method.early_stopped(x, y)
    assert sizes[0] == 3 and sizes[1] == 2  # sample 0 left after the first forward
    assert all(a >= b for a, b in zip(sizes, sizes[1:]))
    assert (x_adv[0] - x[0]).abs().max() < 0.01  # stopped where it started (0.001 N(0, 1) noise)
    assert method.rows == sum(sizes)
    sizes.clear()
    method_tau = make_method("fat", eps=0.3, alpha=0.05, steps=6, tau=2)
    method_tau.bind(net, 3)
    method_tau.early_stopped(x, y)
    assert sizes[:3] == [3, 3, 3] and sizes[3] < 3  # sample 0 takes tau = 2 more steps, then stops


def test_fat_tau_follows_the_dynamic_schedule_through_a_resume():
    method = make_method("fat")
    taus = []
    for epoch in range(12):
        method.set_progress(epoch + 0.5, 12)
        taus.append(method.tau)
    assert taus == [0] * 5 + [1] * 4 + [2] * 3


def test_eps_warmup_is_linear_from_zero_and_survives_a_mid_epoch_resume(tmp_path, digits):
    method = make_method("pgd_at", eps=0.2, eps_warmup_epochs=4)
    method.set_progress(1.0, 10)
    assert method.eps == pytest.approx(0.05) and method.alpha == pytest.approx(2.5 * 0.05 / 10)
    method.set_progress(6.0, 10)
    assert method.eps == 0.2 and method.target_eps == 0.2
    (x, y), _ = digits
    data = (x[:256], y[:256])
    kwargs = dict(epochs=3, batch_size=32, seed=3, augment=False)

    def make():
        torch.manual_seed(0)
        return build_model("cnn", in_channels=1, image_size=8), make_method("atta", eps=EPS, eps_warmup_epochs=2)

    expected = assert_resumes_exactly(make, _fit, data, 13, tmp_path / "ckpt.pt", **kwargs)
    assert [r["eps"] for r in expected] == pytest.approx([EPS * 7 / 16, EPS * 15 / 16, EPS])


def test_overfit_message_reads_a_collapse_off_the_history():
    def rec(epoch, pgd, fgsm):
        return {"epoch": epoch, "val_pgd_acc": pgd, "val_fgsm_acc": fgsm}

    assert overfit_message([rec(1, 0.40, 0.45), rec(2, 0.05, 0.70)]) is not None
    assert overfit_message([rec(1, 0.40, 0.45), rec(2, 0.35, 0.50)]) is None  # a small dip
    assert overfit_message([rec(1, 0.40, 0.45), rec(2, 0.10, 0.20)]) is None  # FGSM fell too: no CO
    assert overfit_message([rec(1, 0.40, 0.45)]) is None
    assert overfit_message([{"epoch": 1}, {"epoch": 2}]) is None  # no validation
    # eps ramping over 2 epochs: epoch 2 trained below the validation's eps and is not judged,
    # epoch 3 (the first at full eps) is
    ramp = [rec(1, 0.05, 0.60), rec(2, 0.10, 0.70)]
    assert overfit_message(ramp) is not None
    assert overfit_message(ramp, warmup_epochs=2) is None
    assert overfit_message([*ramp, rec(3, 0.10, 0.75)], warmup_epochs=2) is not None
    assert overfit_message([*ramp, rec(3, 0.10, 0.75)], warmup_epochs=2.5) is None


@pytest.fixture(scope="module")
def mnist(shared_data):
    from robustkernels.data import load_mnist

    (x, y), (x_test, y_test) = (load_mnist(shared_data / "mnist", train=t) for t in (True, False))
    return (x[:2000], y[:2000]), (x_test[:300], y_test[:300])


def _guarded_run(mnist, name, on_overfit="warn", epochs=3, **kwargs):
    """FGSM without random start at eps 0.3 on MNIST overfits catastrophically in an epoch or two
    (the third on an AVX2-only CPU, whose rounding differs)."""
    train, val = mnist
    torch.manual_seed(0)
    model = build_model("cnn", in_channels=1, image_size=28)
    method = make_method(name, eps=0.3, eps_warmup_epochs=1, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _fit(model, method, train, val_data=val, epochs=epochs, lr=1e-3, on_overfit=on_overfit)
    return model, history, [str(w.message) for w in caught if "catastrophic" in str(w.message)]


def test_the_guard_fires_on_catastrophic_overfitting_and_not_on_pgd_at(mnist):
    _, history, warned = _guarded_run(mnist, "fgsm_rs", random_start=False)
    flagged = [r["epoch"] for r in history if r.get("overfit")]
    assert flagged and warned, history
    last = history[flagged[0] - 1]
    assert last["val_fgsm_acc"] - last["val_pgd_acc"] >= 0.3
    _, history, warned = _guarded_run(mnist, "pgd_at", steps=5)
    assert not any(r.get("overfit") for r in history) and not warned, history
    assert history[-1]["val_pgd_acc"] > 0.3  # PGD-AT learned something robust: the guard had a case


@pytest.mark.parametrize("policy", ["stop", "restore"])
def test_on_overfit_stops_or_restores_the_last_good_epoch(policy, mnist):
    def run(**extra):
        return _guarded_run(mnist, "fgsm_rs", random_start=False, on_overfit=policy, epochs=5, **extra)

    model, history, _ = run()
    flagged = [r["epoch"] for r in history if r.get("overfit")]
    assert flagged == [history[-1]["epoch"]] and len(history) < 5  # ended at the first collapse
    if policy == "restore":
        good = history[-1]["restored_epoch"]
        assert good == len(history) - 1
        train, val = mnist
        torch.manual_seed(0)
        reference = build_model("cnn", in_channels=1, image_size=28)
        _fit(reference, make_method("fgsm_rs", eps=0.3, eps_warmup_epochs=1, random_start=False), train,
             val_data=val, epochs=good, lr=1e-3)
        for a, b in zip(reference.state_dict().values(), model.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
