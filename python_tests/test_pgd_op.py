"""The fused PGD step against reference/ on every backend."""

import pytest
import torch

import robustkernels
from robustkernels import ops
from robustkernels.ops.pgd import pgd_step_op
from robustkernels.ops.pgd import reference as pgd_ref

from .conftest import backend_params
from .helpers import assert_lowp_close, capture_cuda_graph

SHAPES = [(4, 3, 5, 5), (1, 3, 7, 9), (3, 1, 8, 8), (5, 17), (2, 3, 1, 1), (6, 2, 3, 4, 5)]


def inputs(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_nat = torch.rand(shape, generator=g)
    x_adv = (x_nat + 0.1 * (torch.rand(shape, generator=g) - 0.5)).clamp(0, 1)
    grad = torch.randn(shape, generator=g)
    return x_adv.to(dtype), x_nat.to(dtype), grad.to(dtype)


def reference_step(x_adv, x_nat, grad, step, eps, norm, bounds):
    b = x_adv.shape[0]
    as_batch = lambda v: torch.as_tensor(v, dtype=torch.float32).reshape(-1).expand(b)  # noqa: E731
    lo, hi = (torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in bounds)
    return pgd_ref.pgd_step(x_adv, x_nat, grad, as_batch(step), as_batch(eps), lo, hi, norm == "l2")


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_matches_reference_fp32(backend, shape, norm):
    x_adv, x_nat, grad = inputs(shape)
    eps = 0.03 if norm == "linf" else 0.5
    with robustkernels.use_backend(backend):
        got = ops.pgd_step(x_adv, x_nat, grad, step=0.01, eps=eps, norm=norm)
    expected = reference_step(x_adv, x_nat, grad, 0.01, eps, norm, (0.0, 1.0))
    if norm == "linf":
        assert torch.equal(got, expected)  # the same fp32 operations
    else:
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)  # norm of the new delta from sums
    assert ((got - x_nat).flatten(1).norm(dim=1) <= eps + 1e-5).all() if norm == "l2" else True
    assert got.min() >= 0 and got.max() <= 1


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_per_sample_eps_step_and_per_channel_bounds(backend, norm):
    x_adv, x_nat, grad = inputs((4, 3, 6, 6))
    step = torch.tensor([0.0, 0.01, 0.05, 0.2])
    eps = torch.tensor([0.1, 0.0, 0.02, 0.3]) * (1 if norm == "linf" else 10)
    bounds = (torch.tensor([0.0, 0.2, 0.3]), torch.tensor([1.0, 0.7, 0.9]))
    with robustkernels.use_backend(backend):
        got = ops.pgd_step(x_adv, x_nat, grad, step=step, eps=eps, norm=norm, bounds=bounds)
    expected = reference_step(x_adv, x_nat, grad, step, eps, norm, bounds)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    for c, (lo, hi) in enumerate(zip(*bounds)):
        assert got[:, c].min() >= lo and got[:, c].max() <= hi


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("shape", [(1000, 4), (513, 9), (70, 255)], ids=str)
def test_l2_many_small_samples_per_sample_values(backend, shape):
    """Small samples run in blocks vectorised across samples (C++): per-sample step and eps (zeros
    among them), zero-gradient rows and non-finite gradient entries, across block boundaries."""
    x_adv, x_nat, grad = inputs(shape)
    grad[::7] = 0
    grad[3, 1] = float("inf")
    step = torch.rand(shape[0], generator=torch.Generator().manual_seed(1)) * 0.3
    eps = torch.rand(shape[0], generator=torch.Generator().manual_seed(2)) * 0.2
    step[::11], eps[::13] = 0.0, 0.0
    with robustkernels.use_backend(backend):
        got = ops.pgd_step(x_adv, x_nat, grad, step=step, eps=eps, norm="l2")
    torch.testing.assert_close(got, reference_step(x_adv, x_nat, grad, step, eps, "l2", (0.0, 1.0)), rtol=1e-6,
                               atol=1e-6)
    assert ((got - x_nat).norm(dim=1) <= eps + 1e-6).all()


@pytest.mark.parametrize("backend", backend_params())
def test_l2_zero_gradient_only_projects(backend):
    x_adv, x_nat, grad = inputs((3, 2, 4, 4))
    grad[1] = 0
    with robustkernels.use_backend(backend):
        got = ops.pgd_step(x_adv, x_nat, grad, step=0.5, eps=0.05, norm="l2")
    projected = ops.project(x_adv[1:2], x_nat[1:2], eps=0.05, norm="l2")
    torch.testing.assert_close(got[1:2], projected)
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_low_precision_within_reference_error(backend, dtype, norm):
    x_adv, x_nat, grad = inputs((4, 3, 8, 8))
    lowp = [t.to(dtype) for t in (x_adv, x_nat, grad)]
    with robustkernels.use_backend(backend):
        got = ops.pgd_step(*lowp, step=0.01, eps=0.03, norm=norm)
    assert got.dtype == dtype
    ref_fp32 = reference_step(*[t.float() for t in lowp], 0.01, 0.03, norm, (0.0, 1.0))
    assert_lowp_close(got, reference_step(*lowp, 0.01, 0.03, norm, (0.0, 1.0)), ref_fp32)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("which", ["x_adv", "x_nat", "grad"])
@pytest.mark.parametrize("shift", [0, 1, 37])
def test_out_overlapping_an_input_is_computed_correctly(backend, norm, which, shift):
    """``out`` a shifted (partly overlapping) view of an input - or the very same view of x_nat or
    grad - gives exactly the result into a fresh tensor, on every backend."""
    shape = (3, 2, 5, 7)
    n = torch.Size(shape).numel()
    x_adv, x_nat, grad = inputs(shape)
    expected = reference_step(x_adv, x_nat, grad, 0.02, 0.05, norm, (0.0, 1.0))
    with robustkernels.use_backend(backend):
        storage = torch.zeros(2 * n)
        args = {"x_adv": x_adv, "x_nat": x_nat, "grad": grad}
        storage[:n] = args[which].flatten()
        args[which] = storage[:n].view(shape)
        out = storage[shift:shift + n].view(shape)
        if shift == 0 and which == "x_adv":
            out = args["x_adv"]  # the documented in-place update
        ops.pgd_step(args["x_adv"], args["x_nat"], args["grad"], step=0.02, eps=0.05, norm=norm, out=out)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", backend_params())
def test_non_contiguous_inputs_and_in_place_out(backend):
    x_adv, x_nat, grad = inputs((4, 3, 6, 8))
    xa_t, xn_t, g_t = (t.transpose(2, 3) for t in (x_adv, x_nat, grad))  # non-contiguous views
    expected = reference_step(xa_t.contiguous(), xn_t.contiguous(), g_t.contiguous(), 0.01, 0.03, "linf", (0.0, 1.0))
    x_nat_before, grad_before = x_nat.clone(), grad.clone()
    with robustkernels.use_backend(backend):
        got = ops.pgd_step(xa_t, xn_t, g_t, step=0.01, eps=0.03)
        assert torch.equal(got, expected)
        buffer = x_adv.clone()
        result = ops.pgd_step(buffer, x_nat, grad, step=0.01, eps=0.03, out=buffer)  # in place
        assert result is buffer
        assert torch.equal(buffer, reference_step(x_adv, x_nat, grad, 0.01, 0.03, "linf", (0.0, 1.0)))
        strided = torch.empty(4, 3, 6, 8).transpose(2, 3)
        ops.pgd_step(xa_t, xn_t, g_t, step=0.01, eps=0.03, out=strided)  # non-contiguous out
        assert torch.equal(strided, expected)
    assert torch.equal(x_nat, x_nat_before) and torch.equal(grad, grad_before)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_init_in_ball_and_same_on_every_backend(backend, norm):
    x = torch.rand(5, 3, 4, 4)
    with robustkernels.use_backend("reference"):
        expected = ops.random_init(x, 0.1, norm, generator=torch.Generator().manual_seed(3))
    with robustkernels.use_backend(backend):
        got = ops.random_init(x, 0.1, norm, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    distance = (got - x).flatten(1)
    size = distance.abs().max(1).values if norm == "linf" else distance.norm(dim=1)
    assert (size <= 0.1 + 1e-6).all() and got.min() >= 0 and got.max() <= 1


def test_random_init_is_uniform():
    x = torch.full((2000, 50), 0.5)
    u = (ops.random_init(x, 0.25, "linf") - 0.5) / 0.25  # uniform in [-1, 1]
    assert abs(u.mean().item()) < 0.01 and abs(u.var().item() - 1 / 3) < 0.01
    # L2: the radius fraction r/eps has CDF t^d in a d-dimensional ball
    d = 10
    r = (ops.random_init(torch.full((4000, d), 0.5), 0.2, "l2") - 0.5).norm(dim=1) / 0.2
    assert abs((r**d).mean().item() - 0.5) < 0.03  # r^d is uniform on [0, 1]


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("l2", [False, True])
def test_opcheck(backend, l2):
    x_adv, x_nat, grad = inputs((3, 2, 4, 5))
    args = (torch.empty_like(x_adv), x_adv, x_nat, grad, torch.full((3,), 0.01), torch.full((3,), 0.05),
            torch.tensor([0.0, 0.1]), torch.tensor([1.0, 0.9]), l2)
    with robustkernels.use_backend(backend):
        torch.library.opcheck(pgd_step_op.op, args)


def test_compiles_fullgraph():
    x_adv, x_nat, grad = inputs((2, 3, 4, 4))

    @torch.compile(fullgraph=True)
    def update(x_adv, x_nat, grad):
        return ops.pgd_step(x_adv, x_nat, grad, step=0.01, eps=0.03)

    assert torch.equal(update(x_adv, x_nat, grad), reference_step(x_adv, x_nat, grad, 0.01, 0.03, "linf", (0.0, 1.0)))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(step=0.1, eps=-1.0), ValueError, "eps must be >= 0"),
        (dict(step=-0.1, eps=0.1), ValueError, "step must be finite and >= 0"),
        (dict(step=float("inf"), eps=0.1), ValueError, "step must be finite"),
        (dict(step=torch.tensor([0.1, float("inf")]), eps=0.1), ValueError, "step must be >= 0 and finite"),
        (dict(step=0.1, eps=float("nan")), ValueError, "eps must be >= 0"),
        (dict(step=0.1, eps=0.1, bounds=(float("nan"), 1.0)), ValueError, "bounds must not be NaN"),
        (dict(step=0.1, eps=0.1, bounds=(0.0, torch.tensor([1.0, float("nan"), 1.0]))), ValueError, "not be NaN"),
        (dict(step=0.1, eps=torch.tensor([0.1, -0.1])), ValueError, "eps must be >= 0"),
        (dict(step=0.1, eps=torch.ones(3)), ValueError, r"eps must be a float or have shape \[2\]"),
        (dict(step=0.1, eps=0.1, norm="l1"), ValueError, "norm must be one of"),
        (dict(step=0.1, eps=0.1, bounds=(1.0, 0.0)), ValueError, "lo <= hi"),
        (dict(step=0.1, eps=0.1, bounds=(torch.zeros(2), torch.ones(2))), ValueError, "per-channel bounds"),
        (dict(step=0.1, eps=0.1, bounds=0.5), TypeError, "bounds must be a"),
        (dict(step="0.1", eps=0.1), TypeError, "step must be a float"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    x_adv, x_nat, grad = inputs((2, 3, 4, 4))
    with pytest.raises(error, match=match):
        ops.pgd_step(x_adv, x_nat, grad, **kwargs)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_gradient_entries_count_as_zero(backend, norm, bad):
    x_adv, x_nat, grad = inputs((3, 2, 5, 5))
    x_adv = (x_nat + 0.3 * (x_adv - x_nat).sign()).clamp(0, 1)  # outside both balls: the step must project
    poisoned = grad.clone()
    poisoned[0, 0, 1, 2] = poisoned[1, 1, 4, 4] = bad
    poisoned[2] = bad  # a sample whose whole gradient is non-finite: no move, projection only
    cleaned = torch.where(torch.isfinite(poisoned), poisoned, torch.zeros_like(poisoned))
    eps = 0.05 if norm == "linf" else 0.4
    with robustkernels.use_backend(backend):
        got = ops.pgd_step(x_adv, x_nat, poisoned, step=0.02, eps=eps, norm=norm)
        same = ops.pgd_step(x_adv, x_nat, cleaned, step=0.02, eps=eps, norm=norm)
    assert torch.isfinite(got).all() and torch.equal(got, same)
    torch.testing.assert_close(got, reference_step(x_adv, x_nat, poisoned, 0.02, eps, norm, (0.0, 1.0)),
                               rtol=1e-6, atol=1e-6)
    dist = (got - x_nat).flatten(1).abs().amax(1) if norm == "linf" else (got - x_nat).flatten(1).norm(dim=1)
    assert (dist <= eps * (1 + 1e-5)).all()  # inside the ball, whatever the gradient held


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_infinite_eps_means_no_projection(backend, norm):
    x_adv, x_nat, grad = inputs((3, 2, 5, 5))
    with robustkernels.use_backend(backend):
        got = ops.pgd_step(x_adv, x_nat, grad, step=0.7, eps=float("inf"), norm=norm)
    unit = grad.sign() if norm == "linf" else grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(got, (x_adv + 0.7 * unit).clamp(0, 1), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got, reference_step(x_adv, x_nat, grad, 0.7, float("inf"), norm, (0.0, 1.0)),
                               rtol=1e-6, atol=1e-6)


def test_bad_tensors():
    x_adv, x_nat, grad = inputs((2, 3, 4, 4))
    with pytest.raises(ValueError, match="grad has shape"):
        ops.pgd_step(x_adv, x_nat, grad[:, :2], step=0.1, eps=0.1)
    with pytest.raises(TypeError, match="x_nat must be float32"):
        ops.pgd_step(x_adv, x_nat.long(), grad, step=0.1, eps=0.1)
    with pytest.raises(ValueError, match="x_nat is on meta"):
        ops.pgd_step(x_adv, x_nat.to("meta"), grad, step=0.1, eps=0.1)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_backends_match_reference(backend, norm, dtype):
    x_adv, x_nat, grad = (t.to(dtype) for t in inputs((8, 3, 32, 32)))
    bounds = (torch.tensor([0.0, 0.1, 0.2]), torch.tensor([1.0, 0.9, 0.8]))
    with robustkernels.use_backend(backend):
        got = ops.pgd_step(x_adv.cuda(), x_nat.cuda(), grad.cuda(), step=torch.full((8,), 0.01).cuda(), eps=0.03,
                           norm=norm, bounds=tuple(b.cuda() for b in bounds))
    expected = reference_step(x_adv, x_nat, grad, 0.01, 0.03, norm, bounds)
    if norm == "linf":  # elementwise, no FMA: the same bits in every dtype
        assert torch.equal(got.cpu(), expected)
    else:  # the per-sample norms are float64 sums in another order: equal up to their last rounding
        assert_lowp_close(got.cpu(), expected, expected)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("bad", [float("inf"), float("nan")], ids=["inf", "nan"])
@pytest.mark.parametrize("eps", [0.03, float("inf")], ids=["eps", "eps=inf"])
def test_l2_non_finite_perturbation_is_the_same_everywhere(backend, bad, eps):
    """Cases the fuzz test found: an infinite or NaN delta. 1-D input: every element a sample."""
    x_adv, x_nat, grad = torch.tensor([bad, 0.5, 0.2]), torch.tensor([0.4, 0.4, 0.4]), torch.tensor([1.0, -1.0, 2.0])
    with robustkernels.use_backend(backend):
        got = ops.pgd_step(x_adv, x_nat, grad, step=0.01, eps=eps, norm="l2")
    expected = reference_step(x_adv, x_nat, grad, 0.01, eps, "l2", (0.0, 1.0))
    torch.testing.assert_close(got, expected, equal_nan=True)
    assert got[0].isnan() if eps < float("inf") or bad != bad else got[0] == 1.0
    torch.testing.assert_close(got[1:], torch.tensor([0.43, 0.37]) if eps == 0.03 else torch.tensor([0.49, 0.21]))


def meta_args(shape=(4, 3, 6, 6), tensors=True):
    """pgd_step arguments on the meta device: tensors with no values, so any host read of one
    (``.item()``, ``bool()``, ``.tolist()``, a sync) raises."""
    meta = torch.device("meta")
    x = torch.empty(shape, device=meta)
    b, c = shape[0], shape[1]
    if not tensors:
        return x, dict(step=0.01, eps=0.03, bounds=(0.0, 1.0))
    return x, dict(step=torch.full((b,), 0.01, device=meta), eps=torch.full((b,), 0.03, device=meta),
                   bounds=(torch.zeros(c, device=meta), torch.ones(c, device=meta)))


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("tensors", [False, True], ids=["floats", "tensors"])
def test_the_step_reads_no_tensor_value_on_the_host(norm, tensors):
    """The per-step path checks device tensors without a GPU-to-host sync (torch._assert_async),
    so it stays asynchronous and CUDA-graph capturable: on meta tensors, where any read of a
    value fails, pgd_step, project and an in-place update all run through."""
    x, kwargs = meta_args(tensors=tensors)
    assert ops.pgd_step(x, x, x, norm=norm, **kwargs).device.type == "meta"
    assert ops.pgd_step(x, x, x, norm=norm, out=x, **kwargs) is x
    ops.project(x, x, eps=kwargs["eps"], norm=norm, bounds=kwargs["bounds"])
    ops.pgd_step(x.reshape(-1), x.reshape(-1), x.reshape(-1), step=0.01, eps=0.03, norm=norm)  # the flat path


@pytest.mark.parametrize("backend", backend_params(("reference", "cpp")))
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_compiles_fullgraph_with_tensor_bounds_and_per_sample_values(backend, norm):
    x_adv, x_nat, grad = inputs((4, 3, 5, 5))
    bounds = (torch.tensor([0.0, 0.1, 0.2]), torch.tensor([1.0, 0.9, 0.8]))
    step, eps = torch.full((4,), 0.01), torch.tensor([0.03, 0.0, 0.05, 0.02])

    def update(x_adv, x_nat, grad, step, eps, lo, hi):
        return ops.pgd_step(x_adv, x_nat, grad, step=step, eps=eps, norm=norm, bounds=(lo, hi))

    torch._dynamo.reset()
    with robustkernels.use_backend(backend):
        compiled = torch.compile(update, fullgraph=True)(x_adv, x_nat, grad, step, eps, *bounds)
        eager = update(x_adv, x_nat, grad, step, eps, *bounds)
        # the checks are in the graph (torch._assert_async): a negative eps still fails
        with pytest.raises(RuntimeError, match="eps must be >= 0"):
            torch.compile(update, fullgraph=True)(x_adv, x_nat, grad, step, -eps, *bounds)
    assert torch.equal(compiled, eager)


# ---- compiled kernels on a GPU: what the interpreter alone vouches for on the CPU ----

@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(8, 3, 32, 32), (5, 1000), (100_003,)], ids=str)
def test_cuda_flat_path_matches_reference(backend, dtype, shape):
    """Linf with one step, one eps and scalar bounds runs as one flat sample, whatever the shape
    (1-D included): elementwise, the same bits as the reference in every dtype."""
    x_adv, x_nat, grad = (t.to(dtype) for t in inputs(shape))
    with robustkernels.use_backend(backend):
        got = ops.pgd_step(x_adv.cuda(), x_nat.cuda(), grad.cuda(), step=0.01, eps=0.03, bounds=(0.05, 0.95))
    flat = [t.reshape(1, -1) for t in (x_adv, x_nat, grad)]
    expected = reference_step(*flat, 0.01, 0.03, "linf", (0.05, 0.95)).view(shape)
    assert got.dtype == dtype and torch.equal(got.cpu(), expected)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_cuda_fp16_per_sample_matches_reference(backend, norm):
    x_adv, x_nat, grad = (t.half() for t in inputs((6, 3, 9, 11)))
    step, eps = torch.linspace(0.0, 0.02, 6), torch.tensor([0.03, 0.0, 0.5, float("inf"), 0.01, 0.2])
    bounds = (torch.tensor([0.0, 0.1, 0.2]), torch.tensor([1.0, 0.9, 0.8]))
    with robustkernels.use_backend(backend):
        got = ops.pgd_step(x_adv.cuda(), x_nat.cuda(), grad.cuda(), step=step.cuda(), eps=eps.cuda(), norm=norm,
                           bounds=tuple(b.cuda() for b in bounds))
    expected = reference_step(x_adv, x_nat, grad, step, eps, norm, bounds)
    if norm == "linf":
        assert torch.equal(got.cpu(), expected)
    else:  # the per-sample norms are float64 sums in another order
        assert_lowp_close(got.cpu(), expected, reference_step(*(t.float() for t in (x_adv, x_nat, grad)), step, eps,
                                                              norm, bounds))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_cuda_graph_replay(backend, norm):
    """pgd_step with device tensors for step, eps and bounds has no host sync, so a CUDA graph
    captures it; each replay computes the step of the inputs' current contents."""
    x_adv, x_nat, grad = (t.cuda() for t in inputs((8, 3, 16, 16)))
    step, eps = torch.full((8,), 0.01).cuda(), torch.linspace(0.01, 0.5, 8).cuda()
    lo, hi = torch.tensor([0.0, 0.1, 0.2]).cuda(), torch.tensor([1.0, 0.9, 0.8]).cuda()
    out = torch.empty_like(x_adv)

    def update():
        ops.pgd_step(x_adv, x_nat, grad, step=step, eps=eps, norm=norm, bounds=(lo, hi), out=out)

    with robustkernels.use_backend(backend):
        graph, _ = capture_cuda_graph(update)
    for seed in (1, 2, 3):
        new = inputs((8, 3, 16, 16), seed=seed)
        for target, value in zip((x_adv, x_nat, grad), new):
            target.copy_(value)
        graph.replay()
        torch.cuda.synchronize()
        expected = reference_step(*new, 0.01, eps.cpu(), norm, (lo.cpu(), hi.cpu()))
        if norm == "linf":
            assert torch.equal(out.cpu(), expected)
        else:
            torch.testing.assert_close(out.cpu(), expected, rtol=1e-6, atol=1e-6)


def free_gpu_bytes() -> int:
    free, _ = torch.cuda.mem_get_info()
    return free


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_tensor_over_2_31_elements(backend):
    """Indices past int32 (a flat Linf step of 2**31 + 2**20 fp16 elements, 4 GiB a tensor):
    the last elements equal the reference's on the same slice."""
    n, tail = 2**31 + 2**20, 2**21
    if free_gpu_bytes() < 5 * 2 * n:
        pytest.skip("needs 20 GiB of free GPU memory")
    x_nat = torch.rand(n, device="cuda", dtype=torch.float16)
    grad = torch.randn(n, device="cuda", dtype=torch.float16)
    with robustkernels.use_backend(backend):
        out = ops.pgd_step(x_nat, x_nat, grad, step=0.01, eps=0.03)
    for part in (slice(0, tail), slice(n - tail, n)):  # both ends: the indices past 2**31 at the end
        xs, gs = x_nat[part].cpu().view(1, -1), grad[part].cpu().view(1, -1)
        expected = reference_step(xs, xs, gs, 0.01, 0.03, "linf", (0.0, 1.0)).view(-1)
        assert torch.equal(out[part].cpu(), expected)
