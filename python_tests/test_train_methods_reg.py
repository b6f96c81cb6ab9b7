"""The regularised single-step methods of the FastAT Benchmark (NuAT, GAT, GradAlign, ELLE, AAER):
one step of each against its algorithm written out in plain torch, bad arguments, a short run on
the digits against standard training, exact resume, autocast, soft targets and DDP."""

import math
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

from robustkernels.attacks import PGD
from robustkernels.data import load_digits
from robustkernels.models import build_model
from robustkernels.ops import draw_seed
from robustkernels.ops.philox import philox_uniform
from robustkernels.train import make_method
from robustkernels.train.methods import StepContext

from .helpers import assert_resumes_exactly
from .models import accuracy
from .test_train_methods import _fit

EPS = 0.1
NAMES = ("nuat", "gat", "grad_align", "elle", "aaer")


@pytest.fixture(scope="module")
def digits():
    x_train, y_train, x_test, y_test = load_digits()
    return (x_train, y_train), (x_test, y_test)


def mlp(seed=0, scale=1.0, activation=nn.ReLU):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), activation(), nn.Linear(16, 10))
    with torch.no_grad():
        net[1].weight.mul_(scale)
    return net


def batch(seed=1):
    torch.manual_seed(seed)
    return torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))


def method_step(name, net, x, y, seed=7, ctx=None, progress=None, **kwargs):
    """``(loss, parameter gradients)`` of one batch_loss of the method, its generator seeded."""
    method = make_method(name, eps=EPS, **kwargs)
    method.bind(net, len(x))
    if progress is not None:
        method.set_progress(*progress)
    method.generator.manual_seed(seed)
    return method, *loss_and_grads(method.batch_loss(net, x, y, ctx or StepContext()).loss, net)


def loss_and_grads(loss, net):
    return loss, torch.autograd.grad(loss, list(net.parameters()))


def assert_same(got, expected):
    (loss, grads), (loss_ref, grads_ref) = got, expected
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)


def uniform(gen, shape, per_block=1):
    """The method's draw: uniform [0, 1) from the Philox stream keyed by one draw of ``gen``."""
    return philox_uniform(math.prod(shape), draw_seed(gen), per_block=per_block).view(shape)


def input_grad(net, point, y, create_graph=False):
    point = point.detach().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(net(point), y), point, create_graph=create_graph)[0]


def clip(z, x, eps):
    return torch.min(torch.max(z, x - eps), x + eps).clamp(0, 1)


# -- (a) one step against the paper's algorithm ---------------------------------------------------
@pytest.mark.parametrize("guided", [False, True], ids=["ce-batch", "guided-batch"])
def test_nuat_step_is_the_papers(guided):
    net, (x, y) = mlp(), batch()
    weight = 4.0 * 5 / 10  # epoch 5 of 10: nuc_max * 5 / 10
    method = make_method("nuat", eps=EPS)
    method.bind(net, 8)
    method.set_progress(5.25, 10)
    method.batches = int(guided)  # the 2nd batch of an epoch attacks with the nuclear norm
    method.generator.manual_seed(7)
    got = loss_and_grads(method.batch_loss(net, x, y, StepContext()).loss, net)
    assert method.batches == int(guided) + 1

    gen = torch.Generator().manual_seed(7)
    start = (x + EPS / 2 * torch.sign(0.5 - uniform(gen, x.shape))).clamp(0, 1)  # Bernoulli noise
    clean = net(x).detach()
    point = start.clone().requires_grad_(True)
    out = net(point)
    attack_loss = F.cross_entropy(out, y)
    if guided:
        attack_loss = attack_loss + weight * torch.linalg.matrix_norm(clean - out, ord="nuc") / 8
    x_adv = clip(start + EPS * torch.autograd.grad(attack_loss, point)[0].sign(), x, EPS)
    logits = net(x)
    loss = F.cross_entropy(logits, y) + weight * torch.linalg.matrix_norm(net(x_adv) - logits, ord="nuc") / 8
    assert_same(got, loss_and_grads(loss, net))


@pytest.mark.parametrize("guided", [False, True], ids=["ce-batch", "guided-batch"])
def test_gat_step_is_the_papers(guided):
    net, (x, y) = mlp(), batch()
    weight = 10.0 * 4  # epoch 9 of 10: after the share 0.86 the weight is multiplied by 4
    method = make_method("gat", eps=EPS)
    method.bind(net, 8)
    method.set_progress(9.5, 10)
    method.batches = 3 if guided else 2
    method.generator.manual_seed(7)
    got = loss_and_grads(method.batch_loss(net, x, y, StepContext()).loss, net)

    gen = torch.Generator().manual_seed(7)
    start = (x + EPS / 2 * torch.sign(0.5 - uniform(gen, x.shape))).clamp(0, 1)
    p_clean = F.softmax(net(x), dim=1).detach()
    point = start.clone().requires_grad_(True)
    out = net(point)
    attack_loss = F.cross_entropy(out, y)
    if guided:
        attack_loss = attack_loss + weight * ((p_clean - F.softmax(out, dim=1)) ** 2).sum(1).mean()
    x_adv = clip(start + EPS * torch.autograd.grad(attack_loss, point)[0].sign(), x, EPS)
    logits = net(x)
    reg = ((F.softmax(logits, dim=1) - F.softmax(net(x_adv), dim=1)) ** 2).sum(1).mean()
    assert_same(got, loss_and_grads(F.cross_entropy(logits, y) + weight * reg, net))


def test_gat_and_nuat_weights_follow_the_benchmarks_schedules():
    gat, nuat = make_method("gat"), make_method("nuat")
    weights = []
    for epoch in range(100):
        for method in (gat, nuat):
            method.set_progress(epoch + 0.5, 100)
        weights.append((gat.weight, nuat.weight))
    assert [w for w, _ in weights] == [10.0] * 86 + [40.0] * 14  # l2_reg *= 4 after epoch 85
    assert [w for _, w in weights] == pytest.approx([4.0 * e / 100 for e in range(100)])
    authors = make_method("nuat", ramp_share=0.9)  # the authors' script: up to nuc_max over 90 epochs
    authors.set_progress(95.0, 100)
    assert authors.weight == 4.0


def test_grad_align_step_is_the_papers():
    net, (x, y) = mlp(), batch()
    got = method_step("grad_align", net, x, y)[1:]

    gen = torch.Generator().manual_seed(7)
    grad1 = input_grad(net, x, y)  # FGSM from x itself
    x_adv = clip(x + EPS * grad1.sign(), x, EPS)
    draw_seed(gen)  # the fresh global noise after the attack
    noisy = (x + EPS * (2 * uniform(gen, x.shape, per_block=4) - 1)).clamp(0, 1)
    grad2 = input_grad(net, noisy, y, create_graph=True)  # double backpropagation
    cos = F.cosine_similarity(grad1.flatten(1), grad2.flatten(1)).mean()
    loss = F.cross_entropy(net(x_adv), y) + 0.2 * (1 - cos)
    expected = loss_and_grads(loss, net)
    assert_same(got, expected)
    without = loss_and_grads(F.cross_entropy(net(x_adv), y), net)[1]
    assert not torch.allclose(expected[1][0], without[0])  # the regulariser's gradient is in there


def test_grad_align_skips_samples_with_a_zero_gradient():
    from robustkernels.train.methods.grad_align import cosine_alignment

    g1, g2 = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    g1[1] = 0
    expected = F.cosine_similarity(g1.flatten(1), g2.flatten(1))[[0, 2, 3]].mean()
    torch.testing.assert_close(cosine_alignment(g1, g2), expected)
    assert float(cosine_alignment(torch.zeros(2, 3), g2[:2].flatten(1))) == 0.0


def test_elle_step_is_the_papers():
    net, (x, y) = mlp(), batch()
    got = method_step("elle", net, x, y)[1:]

    gen = torch.Generator().manual_seed(7)
    start = (x + EPS * (2 * uniform(gen, x.shape, per_block=4) - 1)).clamp(0, 1)  # FGSM-RS start
    x_adv = (start + 1.25 * EPS * input_grad(net, start, y).sign()).clamp(0, 1)  # not projected onto the ball
    draw_seed(gen)
    u = uniform(gen, (2 * x.numel() + 8,))
    x_a = x + EPS * (2 * u[:x.numel()].view(x.shape) - 1)  # not clamped to the bounds
    x_b = x + EPS * (2 * u[x.numel():2 * x.numel()].view(x.shape) - 1)
    a = u[2 * x.numel():]
    x_c = (1 - a.view(-1, 1, 1, 1)) * x_a + a.view(-1, 1, 1, 1) * x_b
    la, lb, lc = (F.cross_entropy(net(p), y, reduction="none") for p in (x_a, x_b, x_c))
    loss = F.cross_entropy(net(x_adv), y) + 1.0 * ((lc - (1 - a) * la - a * lb) ** 2).mean()
    assert_same(got, loss_and_grads(loss, net))


def test_elle_a_switches_lambda_as_the_authors_schedule():
    method = make_method("elle", adaptive=True, lambda_aux=10.0, decay_rate=0.9, sensitivity=2.0)
    errors = [1.0, 1.1, 0.9, 1.0, 5.0, 1.0, 1.05, 0.95, 20.0, 1.0]
    history, weight, weights = [], 0.0, []
    for error in errors:  # the authors' train.py, lambda_schedule == 'onoff'
        if len(history) > 2 and error > np.mean(history) + 2.0 * np.std(history):
            weight = 10.0
        else:
            weight *= 0.9
        history.append(error)
        weights.append(weight)
    got = []
    for error in errors:
        method.update_weight(torch.tensor(error))
        got.append(method.weight)
    assert got == pytest.approx(weights)
    assert got[4] == 10.0 and got[8] == 10.0 and got[5] == pytest.approx(9.0)


def test_aaer_step_is_the_papers():
    net, (x, y) = mlp(scale=20.0, activation=Sin), batch()  # curved enough for abnormal examples
    got = method_step("aaer", net, x, y)[1:]

    gen = torch.Generator().manual_seed(7)
    start = (x + EPS * (2 * uniform(gen, x.shape, per_block=4) - 1)).clamp(0, 1)
    out_start = net(start).detach()
    before = F.cross_entropy(out_start, y, reduction="none")
    x_adv = clip(start + 1.25 * EPS * input_grad(net, start, y).sign(), x, EPS)
    out = net(x_adv)
    after = F.cross_entropy(out, y, reduction="none").detach()
    abnormal, normal = before > after, before <= after
    n_abnormal = int(abnormal.sum())
    assert 0 < n_abnormal < 8  # the regulariser is in play
    var_abnormal = ((out_start[abnormal] - out[abnormal]) ** 2).sum(1).mean()
    var_normal = ((out_start[normal] - out[normal]) ** 2).sum(1).mean()
    ce_abnormal = (abnormal * (before - after)).sum() / n_abnormal
    gap = max(torch.clamp(var_abnormal - var_normal.item(), -100, 100), 0)
    loss = F.cross_entropy(out, y) + (1.0 * n_abnormal / 8) * (2.5 * ce_abnormal + 1.5 * gap)
    assert_same(got, loss_and_grads(loss, net))


class Sin(nn.Module):
    def forward(self, x):
        return torch.sin(x)


@pytest.mark.parametrize("name", NAMES)
def test_one_hot_targets_give_the_hard_label_loss_and_smoothed_ones_run(name):
    net, (x, y) = mlp(), batch()
    hard = method_step(name, net, x, y)[1]
    one_hot = method_step(name, net, x, y, ctx=StepContext(targets=F.one_hot(y, 10).float()))[1]
    torch.testing.assert_close(one_hot, hard)
    smooth = 0.9 * F.one_hot(y, 10).float() + 0.01
    soft = method_step(name, net, x, y, ctx=StepContext(targets=smooth))[1]
    assert torch.isfinite(soft) and not torch.allclose(soft, hard)


@pytest.mark.parametrize("name", NAMES)
def test_a_step_under_bf16_autocast_with_a_gradient_scaler(name):
    net, (x, y) = mlp(), batch()
    before = [p.detach().clone() for p in net.parameters()]
    ctx = StepContext(autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16),
                      scaler=torch.amp.GradScaler("cpu", init_scale=256.0))
    method = make_method(name, eps=EPS)
    method.bind(net, 8)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    result = method.train_step(net, optimizer, None, x, y, ctx)
    assert torch.isfinite(result.loss)
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters()))


# -- (b) bad arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs, error, match", [
    ("nuat", dict(nuc_max=-1.0), ValueError, "nuc_max"),
    ("nuat", dict(ramp_share=0.0), ValueError, "ramp_share"),
    ("nuat", dict(ramp_share=1.5), ValueError, "ramp_share"),
    ("nuat", dict(noise_factor="half"), TypeError, "noise_factor"),
    ("gat", dict(l2_reg=float("nan")), ValueError, "l2_reg"),
    ("gat", dict(mul=-4.0), ValueError, "mul"),
    ("gat", dict(mul_from=2.0), ValueError, "mul_from"),
    ("gat", dict(step_factor=True), TypeError, "step_factor"),
    ("grad_align", dict(cos_lambda=-0.2), ValueError, "cos_lambda"),
    ("grad_align", dict(cos_lambda="0.2"), TypeError, "cos_lambda"),
    ("elle", dict(lin_reg=-1.0), ValueError, "lin_reg"),
    ("elle", dict(decay_rate=1.5), ValueError, "decay_rate"),
    ("elle", dict(sensitivity=-2.0), ValueError, "sensitivity"),
    ("elle", dict(lambda_aux=None), TypeError, "lambda_aux"),
    ("elle", dict(adaptive=1), TypeError, "adaptive"),
    ("elle", dict(project="no"), TypeError, "project"),
    ("aaer", dict(lambda1=-1.0), ValueError, "lambda1"),
    ("aaer", dict(lambda2=float("inf") * 0), ValueError, "lambda2"),
    ("aaer", dict(lambda3="1.5"), TypeError, "lambda3"),
    ("aaer", dict(noise_factor=-2.0), ValueError, "noise_factor"),
    ("aaer", dict(project=0), TypeError, "project"),
] + [(name, dict(norm="l2"), ValueError, "linf") for name in NAMES]
  + [(name, dict(bogus=1), TypeError, "bogus") for name in NAMES])
def test_bad_arguments_are_refused_by_name(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        make_method(name, **kwargs)


def test_names_take_dashes_and_the_defaults_are_the_benchmarks():
    nuat, gat = make_method("nuat"), make_method("gat")
    grad_align, elle, aaer = make_method("grad-align"), make_method("elle"), make_method("aaer")
    eps = 8 / 255
    for method in (nuat, gat, grad_align, elle, aaer):
        assert method.target_eps == pytest.approx(eps) and method.single_step
    assert (nuat.nuc_max, nuat.noise_factor, nuat.target_alpha) == (4.0, 0.5, pytest.approx(eps))
    assert (gat.l2_reg, gat.mul, gat.mul_from, gat.target_alpha) == (10.0, 4.0, 0.86, pytest.approx(eps))
    assert (grad_align.cos_lambda, grad_align.random_start, grad_align.target_alpha) == (0.2, False,
                                                                                          pytest.approx(eps))
    assert (elle.lin_reg, elle.adaptive, elle.project, elle.random_start) == (1.0, False, False, True)
    assert elle.target_alpha == pytest.approx(1.25 * eps)
    assert (aaer.lambda1, aaer.lambda2, aaer.lambda3, aaer.project, aaer.noise_factor) == (1.0, 2.5, 1.5, True, 1.0)
    assert aaer.target_alpha == pytest.approx(1.25 * eps)
    assert make_method("aaer", alpha=0.01).target_alpha == 0.01  # an explicit alpha wins


# -- (c) on the digits: more robust than standard training ------------------------------------------
@pytest.fixture(scope="module")
def standard_pgd_acc(digits):
    return _digits_pgd_acc("standard", digits)


def _digits_pgd_acc(name, digits, **kwargs):
    (x, y), (x_test, y_test) = digits
    torch.manual_seed(0)
    model = build_model("cnn", in_channels=1, image_size=8)
    _fit(model, make_method(name, eps=EPS, **kwargs), (x, y), epochs=3, batch_size=64)
    model.eval()
    x_test, y_test = x_test[:300], y_test[:300]
    x_adv = PGD(model, eps=EPS, alpha=EPS / 4, steps=10)(x_test, y_test)
    return accuracy(model, x_adv, y_test), accuracy(model, x_test, y_test)


@pytest.mark.parametrize("name", NAMES)
def test_beats_standard_training_under_pgd(name, digits, standard_pgd_acc):
    robust, clean = _digits_pgd_acc(name, digits)
    assert robust > standard_pgd_acc[0] + 0.1, (robust, clean, standard_pgd_acc)  # about 0.5 vs 0.65-0.7
    assert clean > 0.8


# -- (d) running state: round trip and exact resume ---------------------------------------------------
@pytest.mark.parametrize("name", ["nuat", "gat"])
def test_state_dict_round_trip(name):
    net, (x, y) = mlp(), batch()
    method = make_method(name, eps=EPS)
    method.bind(net, 8)
    method.start_epoch(1, 3)
    for step in range(5):
        method.set_progress(1 + step / 5, 3)
        method.batch_loss(net, x + 0.01 * step, y, StepContext())
    fresh = make_method(name, eps=EPS)
    fresh.load_state_dict(method.state_dict())
    assert fresh.state_dict() == method.state_dict() == {"batches": 5}  # the next batch is a guided one
    method.start_epoch(2, 3)
    assert method.batches == 0


def test_elle_a_resumed_from_its_state_dict_switches_as_if_never_stopped():
    errors = [1.0, 1.1, 0.9, 1.0, 5.0, 1.0, 1.05, 0.95, 20.0, 1.0, 1.2, 30.0, 0.5]
    whole, first = (make_method("elle", adaptive=True) for _ in range(2))
    for error in errors:
        whole.update_weight(torch.tensor(error))
    for error in errors[:6]:
        first.update_weight(torch.tensor(error))
    resumed = make_method("elle", adaptive=True)
    resumed.load_state_dict(first.state_dict())
    for error in errors[6:]:
        resumed.update_weight(torch.tensor(error))
    assert resumed.state_dict() == whole.state_dict()
    assert resumed.weight == pytest.approx(10.0 * 0.99) and resumed.count == len(errors)  # on at 30.0, decayed once
    assert make_method("elle").state_dict() == {}  # constant lambda: nothing to keep


@pytest.mark.parametrize("name, kwargs", [("nuat", {}), ("elle", dict(adaptive=True, sensitivity=0.0))])
def test_an_interrupted_run_resumes_exactly(name, kwargs, tmp_path, digits):
    (x, y), _ = digits
    data, options = (x[:128], y[:128]), dict(epochs=2, batch_size=32, seed=3)

    def make():
        torch.manual_seed(0)
        return build_model("cnn", in_channels=1, image_size=8), make_method(name, eps=EPS, **kwargs)

    # the checkpoint of step 5 lies after the first batch of epoch 2: NuAT's next batch is a guided one
    assert_resumes_exactly(make, _fit, data, 7, tmp_path / "ckpt.pt", **options)


# -- DDP: the double backward and ELLE-A's shared lambda under DistributedDataParallel --------------
def _ddp_rank(rank: int, world: int, init_file: str, out: str) -> None:
    import os

    import torch.distributed as dist

    from python_tests.dist_worker import exit_now
    from robustkernels.train import fit

    os.environ["WORLD_SIZE"] = str(world)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    x, y, _, _ = load_digits()
    results = {}
    for name, kwargs in [("grad_align", {}), ("elle", dict(adaptive=True)), ("nuat", {}), ("aaer", {})]:
        torch.manual_seed(0)
        model = build_model("cnn", in_channels=1, image_size=8)
        method = make_method(name, eps=EPS, **kwargs)
        fit(model, method, (x[:128], y[:128]), epochs=1, batch_size=32, lr=0.05, optimizer="sgd", progress=False)
        results[name] = {"state": model.state_dict(), "method": method.state_dict()}
    torch.save(results, f"{out}.{rank}")
    dist.barrier()
    dist.destroy_process_group()
    exit_now()


@pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32", reason="needs torch.distributed")
def test_two_gloo_processes_train_in_step(tmp_path):
    out = str(tmp_path / "rank")
    mp.spawn(_ddp_rank, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(2)]
    for name, result in ranks[0].items():
        for key, value in result["state"].items():  # DDP kept the replicas equal
            torch.testing.assert_close(ranks[1][name]["state"][key], value, rtol=0, atol=0, msg=name)
            assert torch.isfinite(value).all()
        assert ranks[1][name]["method"] == result["method"]  # ELLE-A's lambda and statistics agree
    assert ranks[0]["elle"]["method"]["count"] == 4
