"""Fuzzing (hypothesis): the public ops, every attack and ``evaluate`` with random shapes, dtypes,
values (NaN, inf, huge, empty) and arguments. Every outcome is a correct result - checked
against the reference backend or the threat model's invariants - or a ValueError/TypeError whose
message names the argument at fault; never a crash, a torch-internal message or a silently
wrong value. Derandomised, so CI sees the same cases every run."""

import re

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

import robustkernels
from robustkernels import ops
from robustkernels.attacks import APGD, APGDT, CW, FAB, FGSM, MIFGSM, PGD, Square
from robustkernels.eval import evaluate

FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.int64, torch.bool]
FLOATS_MOSTLY = DTYPES[:4] * 3 + DTYPES[4:]  # bad dtypes too, but most cases get past the checks
SPECIAL = [float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 0.0]


@st.composite
def tensors(draw, min_dims=0, max_dims=4, dtypes=FLOATS_MOSTLY, shape=None, specials=True, low=-2.0, high=2.0):
    """A tensor of a random (or given) shape and dtype; some entries replaced by NaN, +-inf or huge."""
    if shape is None:
        shape = draw(st.lists(st.integers(0, 5), min_size=min_dims, max_size=max_dims))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**16))
    t = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * (high - low) + low
    if specials and t.numel() and draw(st.booleans()):
        flat = t.view(-1)
        for _ in range(draw(st.integers(1, 3))):
            flat[draw(st.integers(0, t.numel() - 1))] = draw(st.sampled_from(SPECIAL))
    if dtype == torch.bool:
        return t > 0
    if not dtype.is_floating_point:
        return t.nan_to_num(0.0, 0.0, 0.0).clamp(-100, 100).to(dtype)
    return t.to(dtype)


def scalars(good):
    """A good value (three times in four), or a bad one of another kind."""
    bad = st.sampled_from([-1.0, float("nan"), float("inf"), 0, "0.1", None, True, torch.tensor([0.1, 0.2, 0.3])])
    return st.one_of(st.sampled_from(good), st.sampled_from(good), st.sampled_from(good), bad)


def names_the_argument(exc: Exception, names) -> bool:
    text = str(exc)
    return isinstance(exc, (ValueError, TypeError)) and any(re.search(rf"\b{re.escape(n)}\b", text) for n in names)


def run(fn, names):
    """``fn()`` or None if it raised a ValueError/TypeError naming one of ``names``; anything else fails."""
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 (the test is about which exceptions come out)
        if not names_the_argument(exc, names):
            pytest.fail(f"{type(exc).__name__} not naming any of {names}: {exc}")
        event(f"refused: {type(exc).__name__}")
        return None
    event("a result")
    return result


def same(a: torch.Tensor, b: torch.Tensor, dtype) -> None:
    tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 2e-2)
    torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol, equal_nan=True)


# -- ops --------------------------------------------------------------------------------------
PGD_NAMES = ("x_adv", "x_nat", "grad", "step", "eps", "norm", "bounds", "lo", "hi", "out")


@FUZZ
@given(st.data())
def test_pgd_step(data):
    x_adv = data.draw(tensors(min_dims=0))
    mismatch = data.draw(st.integers(0, 3)) == 0
    shape = data.draw(st.lists(st.integers(0, 5), max_size=4)) if mismatch else list(x_adv.shape)
    x_nat = data.draw(tensors(shape=shape, dtypes=DTYPES if mismatch else [x_adv.dtype]))
    grad = data.draw(tensors(shape=list(x_adv.shape), dtypes=DTYPES[:4]))
    step, eps = data.draw(scalars([0.0, 0.01, 0.5])), data.draw(scalars([0.0, 0.03, 1.0, float("inf")]))
    norm = data.draw(st.sampled_from(["linf", "l2"] * 3 + ["l1", 2]))
    bounds = data.draw(st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (-float("inf"), float("inf"))] * 2
                                       + [(1.0, 0.0), (float("nan"), 1.0), (0.0,), None]))
    kwargs = dict(step=step, eps=eps, norm=norm, bounds=bounds)
    got = run(lambda: ops.pgd_step(x_adv, x_nat, grad, **kwargs), PGD_NAMES)
    if got is None:
        return
    assert got.shape == x_adv.shape and got.dtype == x_adv.dtype
    with robustkernels.use_backend("reference"):
        expected = ops.pgd_step(x_adv, x_nat, grad, **kwargs)
    same(got, expected, x_adv.dtype)
    if x_adv.dtype != torch.float64 and x_adv.numel() <= 64:  # Triton (interpreted) takes no fp64
        with robustkernels.use_backend("triton"):
            same(ops.pgd_step(x_adv, x_nat, grad, **kwargs), expected, x_adv.dtype)
    if torch.isfinite(x_nat).all() and torch.isfinite(x_adv).all() and x_adv.dtype in (torch.float32, torch.float64):
        assert torch.isfinite(got).all()  # non-finite gradient entries count as 0


@FUZZ
@given(st.data())
def test_lwta(data):
    h = data.draw(tensors(min_dims=0))
    kwargs = dict(competitors=data.draw(st.sampled_from([2, 2, 2, 3, 1, 0, 2.0])),
                  temperature=data.draw(st.sampled_from([0.67, 0.67, 0.01, 0.0, -1.0, float("nan")])),
                  dim=data.draw(st.sampled_from([0, 1, 1, -1, 3])), hard=data.draw(st.booleans()),
                  mode=data.draw(st.sampled_from(["sample", "sample", "argmax", "soft"])))
    names = ("h", "competitors", "temperature", "dim", "mode")
    got = run(lambda: ops.lwta(h, generator=torch.Generator().manual_seed(1), **kwargs), names)
    if got is None:
        return
    with robustkernels.use_backend("reference"):
        expected = ops.lwta(h, generator=torch.Generator().manual_seed(1), **kwargs)
    assert got.shape == h.shape and got.dtype == h.dtype
    assert got[h.isnan()].isnan().all()  # a NaN is never swallowed
    clean = _blocks_without_nan(h, kwargs["competitors"], kwargs["dim"])  # which unit wins beside a NaN: unspecified
    same(got[clean], expected[clean], h.dtype)


def _blocks_without_nan(h, competitors, dim):
    """Mask of the elements of h whose competition block holds no NaN."""
    moved = h.movedim(dim, -1)
    if h.numel() == 0:
        return torch.ones_like(h, dtype=torch.bool)
    blocks = moved.reshape(*moved.shape[:-1], -1, competitors).isnan().any(-1, keepdim=True)
    return ~blocks.expand(*blocks.shape[:-1], competitors).reshape(moved.shape).movedim(-1, dim)


@FUZZ
@given(st.data())
def test_noise(data):
    x = data.draw(tensors(min_dims=0))
    alpha = data.draw(st.one_of(st.sampled_from([0.25, 0.0, -0.1, "a", None]), tensors(max_dims=2, specials=False)))
    which = data.draw(st.sampled_from(["weight", "x"]))
    channel_dim = data.draw(st.integers(-2, 2))

    def call():
        gen = torch.Generator().manual_seed(3)
        if which == "weight":
            return ops.noisy_weight(x, alpha, generator=gen)
        return ops.inject_noise(x, alpha, channel_dim=channel_dim, generator=gen)

    got = run(call, ("weight", "x", "alpha", "channel_dim"))
    if got is None:
        return
    with robustkernels.use_backend("reference"):
        expected = call()
    assert got.shape == x.shape and got.dtype == x.dtype
    same(got, expected, x.dtype)


@FUZZ
@given(n=st.sampled_from([0, 1, 7, -1, 2.5, "3"]), seed=st.sampled_from([0, 2**63 - 1, -1, 2**64, 1.5]),
       offset=st.sampled_from([0, 5, -3]), normal=st.booleans())
def test_philox(n, seed, offset, normal):
    draw = ops.philox_normal if normal else ops.philox_uniform
    got = run(lambda: draw(n, seed, offset), ("n", "seed", "offset"))
    if got is None:
        return
    with robustkernels.use_backend("reference"):
        assert torch.equal(got, draw(n, seed, offset))
    assert got.shape == (n,) and torch.isfinite(got).all()


# -- attacks ----------------------------------------------------------------------------------
class Linear(nn.Module):
    """A 3-class linear model on any input size (flattened, resized to 12 features)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 3)
        torch.nn.init.normal_(self.fc.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        flat = x.flatten(1).float()
        flat = torch.nn.functional.pad(flat, (0, max(0, 12 - flat.shape[1])))[:, :12]
        return self.fc(flat)


ATTACKS = {
    "fgsm": lambda m, kw: FGSM(m, **kw),
    "pgd": lambda m, kw: PGD(m, steps=3, **kw),
    "mifgsm": lambda m, kw: MIFGSM(m, steps=3, **kw),
    "apgd": lambda m, kw: APGD(m, steps=3, **kw),
    "apgdt": lambda m, kw: APGDT(m, steps=3, n_target_classes=2, **kw),
    "fab": lambda m, kw: FAB(m, steps=3, **kw),
    "square": lambda m, kw: Square(m, n_queries=5, **kw),
    "cw": lambda m, kw: CW(m, steps=3, **kw),
}
ATTACK_NAMES = ("x", "y", "target", "eps", "alpha", "norm", "bounds", "model", "steps", "n_target_classes")


@FUZZ
@given(st.data())
def test_attacks(data):
    name = data.draw(st.sampled_from(list(ATTACKS)))
    x = data.draw(tensors(min_dims=1, max_dims=4, low=0.0, high=1.0))
    y = data.draw(st.one_of(
        tensors(shape=list(x.shape[:1]), dtypes=[torch.int64], specials=False, low=0.0, high=2.99),
        tensors(min_dims=0, max_dims=2, dtypes=[torch.int64, torch.float32], low=-1.0, high=4.0)))
    kwargs = dict(eps=data.draw(scalars([0.03, 0.3, 0.0])), norm=data.draw(st.sampled_from(["linf", "l2", "l1"])))
    model = Linear()
    attack = run(lambda: ATTACKS[name](model, kwargs), ATTACK_NAMES)
    if attack is None:
        return
    x_adv = run(lambda: attack(x, y), ATTACK_NAMES)
    if x_adv is None:
        return
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert torch.isfinite(x_adv).all() and ((x_adv >= 0) & (x_adv <= 1)).all()
    if name not in ("fab", "cw"):  # minimum-norm attacks may return points beyond eps (they do not count)
        slack = torch.finfo(x.dtype).eps  # the ball's edge rounded to x's dtype (bf16: 1/128)
        delta = (x_adv.double() - x.double()).reshape(len(x), -1)
        dist = delta.abs().amax(1) if kwargs["norm"] == "linf" else delta.norm(dim=1)
        assert (dist <= kwargs["eps"] + slack * (1 + dist.new_tensor(delta.shape[1]).sqrt())).all()


# -- evaluate ---------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_evaluate(data):
    x = data.draw(tensors(min_dims=1, max_dims=4, dtypes=[torch.float32, torch.float64, torch.int64],
                          low=0.0, high=1.0))
    y = data.draw(st.one_of(
        tensors(shape=list(x.shape[:1]), dtypes=[torch.int64], specials=False, low=0.0, high=2.99),
        tensors(min_dims=0, max_dims=2, dtypes=[torch.int64, torch.float32, torch.bool], low=-1.0, high=4.0)))
    kwargs = dict(eps=data.draw(scalars([0.1])),
                  attacks=data.draw(st.sampled_from([("fgsm",), ("pgd",), "fgsm", ("fgsm", "pgd"), (), ("nope",)])),
                  steps=data.draw(st.sampled_from([None, {"pgd": 2}, {"pgd": 2}, {"pgd": 0}, {"pdg": 2}, 3])),
                  batch_size=data.draw(st.sampled_from([4, 4, 64, 0, -1])), checks=False, progress=False)
    names = ("data", "x", "y", "eps", "attacks", "steps", "batch_size", "model")
    report = run(lambda: evaluate(Linear(), (x, y), **kwargs), names)
    if report is None:
        return
    assert report.n_samples == len(y) and 0 <= report.worst_case.mean <= report.clean_accuracy.mean <= 1


# -- defences and fit's data handling -------------------------------------------------------------
FRONT_NAMES = ("BitDepthReduction", "MedianSmoothing", "JPEGCompression", "GaussianNoise", "bits", "kernel_size",
               "quality", "sigma", "x")


@FUZZ
@given(st.data())
def test_defences(data):
    """Every front-end, good and bad arguments, any input: a same-shaped result in [0, 1] (for
    float [N, C, H, W] input in [0, 1]) or an error naming the front-end or its argument."""
    from robustkernels.defences import BitDepthReduction, GaussianNoise, JPEGCompression, MedianSmoothing

    kind = data.draw(st.sampled_from([BitDepthReduction, MedianSmoothing, JPEGCompression, GaussianNoise]))
    arg = data.draw({BitDepthReduction: scalars([1, 4, 8]), MedianSmoothing: scalars([1, 2, 3]),
                     JPEGCompression: scalars([10, 75, 95]), GaussianNoise: scalars([0.0, 0.05, 1.0])}[kind])
    front = run(lambda: kind(arg), FRONT_NAMES)
    if front is None:
        return
    channels = data.draw(st.sampled_from([1, 3]))
    x = data.draw(tensors(shape=data.draw(st.sampled_from([[2, channels, 8, 8], [1, channels, 5, 7], [0, 1, 4, 4],
                                                           [3, 8, 8], [2, channels, 1, 1]])),
                          low=data.draw(st.sampled_from([0.0, 0.0, -0.5])), high=1.0))
    out = run(lambda: front(x), FRONT_NAMES)
    if out is not None:
        assert out.shape == x.shape and out.dtype == x.dtype
        low, high = (0.0, 1.0) if front.unit_range else (float(x.min()), float(x.max())) if x.numel() else (0, 1)
        assert bool(torch.isfinite(out).all()) and (out.numel() == 0 or low <= float(out.min()) <= float(out.max())
                                                    <= high)


FIT_NAMES = ("train_data", "batch_size", "labels")


@settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fit_data_handling(data):
    """Tensors, Datasets, dict Datasets and DataLoaders with any batch size, drop_last, shuffle,
    sampler or batch_sampler, labels in or out of range: fit trains on exactly the batches it
    promises (ceil(N / batch_size) steps of batch_size, the last one shorter) or refuses in one
    error naming the data or the batch size, before any step."""
    from torch.utils.data import DataLoader, SequentialSampler, TensorDataset

    from robustkernels.train import fit, make_method

    n = data.draw(st.integers(1, 40))
    x = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(n))
    y = torch.randint(0, data.draw(st.sampled_from([3, 3, 3, 5])), (n,), generator=torch.Generator().manual_seed(n))
    dataset = TensorDataset(x, y)
    shape = data.draw(st.sampled_from(["tensors", "dataset", "loader", "loader", "sampler", "batch_sampler"]))
    loader_bs = data.draw(st.sampled_from([1, 7, 16]))
    if shape == "tensors":
        train = (x, y)
    elif shape == "dataset":
        train = dataset
    elif shape == "loader":
        train = DataLoader(dataset, batch_size=loader_bs, shuffle=data.draw(st.booleans()),
                           drop_last=data.draw(st.booleans()))
    elif shape == "sampler":
        train = DataLoader(dataset, batch_size=loader_bs, sampler=type("Custom", (SequentialSampler,), {})(dataset))
    else:
        train = DataLoader(dataset, batch_sampler=[list(range(0, n, 2))])
    batch_size = data.draw(st.sampled_from([None, 4, 16, loader_bs]))
    steps = []
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    history = run(lambda: fit(model, make_method("standard"), train, epochs=1, progress=False, lr=0.01,
                              callback=steps.append, **kwargs), FIT_NAMES)
    if history is None:
        assert steps == []
        return
    expected = batch_size or (train.batch_size if isinstance(train, DataLoader) else None) or 128
    assert len(steps) == -(-n // expected)
    assert int(y.max()) < 4  # labels outside the model's 4 classes never train
