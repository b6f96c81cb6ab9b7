"""The fused PGD step: gradient step, projection onto the eps-ball, clamp to the valid range.

``pgd_step(x_adv, x_nat, grad, step=, eps=, norm=, bounds=)`` does in one pass what eager code
does in six or more: Linf ``x_adv + step * sign(grad)``, or L2 ``x_adv + step * grad / ||grad||``
per sample (no step where the gradient is zero), then the projection onto the ball of radius
``eps`` around ``x_nat`` (clip for Linf, rescale for L2) and the clamp to ``bounds``. L2 needs
the norm of the new perturbation: it comes from the same reduction pass as ``||grad||``
(``||d + u g||^2 = ||d||^2 + 2u<d, g> + u^2 ||g||^2``), so L2 is two passes, not three.

The update is not differentiable (attacks take it under ``no_grad``); there is no autograd.
"""

from __future__ import annotations

import torch

from ...common import is_number
from ...threat import broadcast_bounds, channel_bounds, check_norm, per_sample  # noqa: F401 (re-exported)
from .._random import draw_seed
from .._registry import KernelOp
from .._validation import aliases_partly, check_float_tensor, opmath_dtype
from ..philox import philox_normal, philox_uniform
from . import reference


def _pgd_step_schema(out: torch.Tensor, x_adv: torch.Tensor, x_nat: torch.Tensor, grad: torch.Tensor,
                     step: torch.Tensor, eps: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, l2: bool) -> None:
    """The PGD update into ``out`` (may alias ``x_adv``): Linf ``x_adv + step * sign(grad)``, or
    L2 ``x_adv + step * grad / ||grad||``, then the projection onto the eps-ball around ``x_nat``
    and the clamp to ``[lo, hi]``. ``step``, ``eps``: [B]; ``lo``, ``hi``: [C] per channel along
    dim 1, or [1]; all in the op-math dtype."""
    raise NotImplementedError  # the schema only


pgd_step_op = KernelOp("pgd_step_", _pgd_step_schema, device_arg="x_adv", mutates_args=("out",))


def _pgd_reference(out, x_adv, x_nat, grad, step, eps, lo, hi, l2):
    out.copy_(reference.pgd_step(x_adv, x_nat, grad, step, eps, lo, hi, l2))


pgd_step_op.register_backend("reference", _pgd_reference)
pgd_step_op.register_compiled("pgd_step_")
pgd_step_op.register_backend("triton", "robustkernels.ops.pgd.triton:pgd_step")


@pgd_step_op.register_fake
def _pgd_fake(out, x_adv, x_nat, grad, step, eps, lo, hi, l2):
    return None


def _check_tensor(name: str, t, like: torch.Tensor | None = None) -> torch.Tensor:
    check_float_tensor(name, t)
    if like is not None:
        if t.shape != like.shape:
            raise ValueError(f"{name} has shape {list(t.shape)} but x_adv has {list(like.shape)}")
        if t.device != like.device:
            raise ValueError(f"{name} is on {t.device} but x_adv is on {like.device}")
    return t


def pgd_step(x_adv: torch.Tensor, x_nat: torch.Tensor, grad: torch.Tensor, *, step, eps, norm: str = "linf",
             bounds=(0.0, 1.0), out: torch.Tensor | None = None) -> torch.Tensor:
    """One PGD update for a batch, fused.

    Args:
        x_adv, x_nat, grad: [B, ...] tensors of one shape (any layout; fp32/bf16/fp16, math in
            fp32, or fp64). ``grad`` is cast to ``x_adv``'s dtype if it differs.
        step, eps: floats or per-sample [B] tensors, >= 0; ``step`` finite, ``eps = inf``
            means no projection.
        norm: ``"linf"`` or ``"l2"``.
        bounds: ``(lo, hi)`` floats, or per-channel tensors along dim 1 (normalised inputs).
        out: where to write (may be ``x_adv`` itself, for an in-place update; an ``out`` that
            partly overlaps an input is computed apart and written once, so it is never wrong).
    Returns:
        ``out`` (or a new tensor like ``x_adv``).

    Gradient entries that are NaN or +-inf count as 0 (no move along them, and for L2 no share
    of ``||grad||``), the same on every backend; NaN bounds are an error. x_adv and x_nat are not
    scanned (that would cost a pass): Linf, a NaN in them propagates to its element; L2, a sample
    whose new perturbation has a NaN or infinite norm is projected onto x_nat (its non-finite
    elements come out NaN).
    """
    l2 = check_norm(norm, ("linf", "l2"), "pgd_step (L1: ops.project_l1, see robustkernels.ops.l1)")
    _check_tensor("x_adv", x_adv)
    if x_adv.dim() < 1 or x_adv.shape[0] == 0 and x_adv.numel() != 0:
        raise ValueError(f"x_adv needs a batch dimension, got shape {list(x_adv.shape)}")
    _check_tensor("x_nat", x_nat, x_adv)
    _check_tensor("grad", grad, x_adv)
    if x_nat.dtype != x_adv.dtype:
        raise TypeError(f"x_nat is {x_nat.dtype} but x_adv is {x_adv.dtype}")
    lo, hi = channel_bounds(bounds, x_adv)
    if out is not None:
        _check_tensor("out", out, x_adv)
        if out.dtype != x_adv.dtype:
            raise TypeError(f"out is {out.dtype} but x_adv is {x_adv.dtype}")
        if any(aliases_partly(out, t) for t in (x_adv, x_nat, grad)) or (out is not x_adv and any(
                out.data_ptr() == t.data_ptr() and t.numel() for t in (x_nat, grad))):
            # a kernel would read what it already wrote: compute apart, then write out once
            return out.copy_(pgd_step(x_adv, x_nat, grad, step=step, eps=eps, norm=norm, bounds=bounds))
    grad = grad.to(x_adv.dtype)
    if not l2 and is_number(step) and is_number(eps) and lo.numel() == 1 and x_adv.numel():
        # Linf with one step, one eps and scalar bounds treats every element alike: the batch is
        # one sample, whatever its layout (1-D, B in the millions), with no per-sample work.
        flat = [t.reshape(1, -1) for t in (x_adv, x_nat, grad)]
        step_t, eps_t = per_sample(step, "step", flat[0], finite=True), per_sample(eps, "eps", flat[0])
        target = out.view(1, -1) if out is not None and out.is_contiguous() else None
        result = pgd_step_prepared(*flat, step_t, eps_t, lo, hi, False, out=target).view(x_adv.shape)
        if out is None:
            return result
        return out if target is not None else out.copy_(result)
    step_t, eps_t = per_sample(step, "step", x_adv, finite=True), per_sample(eps, "eps", x_adv)
    return pgd_step_prepared(x_adv, x_nat, grad, step_t, eps_t, lo, hi, l2, out=out)



def pgd_step_prepared(x_adv: torch.Tensor, x_nat: torch.Tensor, grad: torch.Tensor, step: torch.Tensor,
                      eps: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, l2: bool,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`pgd_step` with its arguments already checked and converted: ``step``/``eps`` [B]
    and ``lo``/``hi`` [C] or [1] in the op-math dtype, ``grad`` in ``x_adv``'s dtype. No checks,
    no host synchronisation: what an attack calls at every step after checking once. Outside
    autograd (an attack's step) eager mode skips the custom-op dispatch (``call_untracked``):
    twice per APGD step it cost 2-3% of a step on a small CNN."""
    target = (
        out
        if out is not None and out.is_contiguous()
        else torch.empty_like(x_adv, memory_format=torch.contiguous_format)
    )
    args = (target, x_adv.contiguous(), x_nat.contiguous(), grad.contiguous(), step, eps, lo, hi, l2)
    tracked = torch.is_grad_enabled() and any(t.requires_grad for t in args[1:4])
    run = pgd_step_op if tracked else pgd_step_op.call_untracked
    run(*args)
    if out is not None and target is not out:
        out.copy_(target)
        return out
    return target


def project(x: torch.Tensor, x_nat: torch.Tensor, *, eps, norm: str = "linf", bounds=(0.0, 1.0),
            out: torch.Tensor | None = None) -> torch.Tensor:
    """Projection onto the eps-ball around ``x_nat`` and clamp to ``bounds``: a PGD step of size 0."""
    return pgd_step(x, x_nat, x, step=0.0, eps=eps, norm=norm, bounds=bounds, out=out)


def random_init(x_nat: torch.Tensor, eps, norm: str = "linf", bounds=(0.0, 1.0), *,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """A random start in the eps-ball around ``x_nat``, clamped to ``bounds``, from the shared
    Philox stream: uniform in the Linf box, or uniform in the L2 ball (a normal direction and
    radius ``eps * u^(1/d)``, d = elements per sample)."""
    l2 = check_norm(norm, ("linf", "l2"), "random_init")
    _check_tensor("x_nat", x_nat)
    eps_t = per_sample(eps, "eps", x_nat)
    batch, n = x_nat.shape[0], x_nat.numel()
    if n == 0:
        return x_nat.clone()
    seed = draw_seed(generator)
    compute = opmath_dtype(x_nat.dtype)
    shape = [batch] + [1] * (x_nat.dim() - 1)
    if l2:
        direction = philox_normal(n, seed, 0, device=x_nat.device, per_block=4).to(compute).view(batch, -1)
        direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
        radius = philox_uniform(batch, seed, n, device=x_nat.device, per_block=4).to(compute)
        radius = eps_t * radius.pow(1.0 / direction.shape[1])
        start = x_nat.to(compute) + (direction * radius[:, None]).view(x_nat.shape)
    else:
        u = philox_uniform(n, seed, 0, device=x_nat.device, per_block=4).to(compute).view(x_nat.shape)
        start = x_nat.to(compute) + (2 * u - 1) * eps_t.view(shape)
    return project(start.to(x_nat.dtype), x_nat, eps=eps_t, norm=norm, bounds=bounds)
