"""``evaluate(model, data, eps=...)``: every attack on every sample, EOT for stochastic models,
worst-case accuracy, the gradient-masking checks and the figures for the plots - at most twice,
the second time through BPDA when the model's own gradients fail the masking checks. The pass
over the data is :mod:`~robustkernels.eval.eval_pass`; the report is assembled from plain values
(:mod:`~robustkernels.eval.assemble`), as the merge of a sharded run assembles it."""

from __future__ import annotations

import torch
from torch import nn

from ..common import grad_enabled, typed_options
from ..defences import with_bpda
from ..ops import draw_seed
from ..threat import ThreatModel
from .checks import MASKING_CHECKS
from .eval_pass import Share, one_pass
from .options import EvalOptions, check_eval_options
from .report import RobustnessReport


def evaluate(model: nn.Module, data, options: EvalOptions | None = None, **fields) -> RobustnessReport:
    """Evaluate ``model`` against ``attacks`` within the ``norm`` ball of radius ``eps``.

    Args:
        data: a DataLoader of ``(x, y)`` batches or a pair of tensors; x in ``bounds``.
        options: an :class:`~robustkernels.eval.options.EvalOptions` (typed: its fields are the
            arguments below), or those fields as keywords (which override it where both are given).
        eps: the radius of the threat model (required).
        attacks: names among ``fgsm, pgd, cw, apgd-ce, apgd-dlr, md, square`` (``md``: Linf).
        eot_iter: gradient/prediction averaging passes per attack step; ``"auto"``: 20 if the
            model is stochastic (two forward passes differ), else 1.
        repeats: evaluation passes over the adversarial inputs whose accuracies give mean and
            spread; ``"auto"``: 5 for stochastic models, else 1.
        checks: run the gradient-masking checks and the eps curves on the first
            ``check_samples`` samples; ``curve_eps`` are multiples of ``eps``.
        steps: override attack lengths, e.g. ``{"pgd": 50, "apgd": 100, "cw": 30, "md": 50, "square": 1000}``.
        suite: ``"autoattack"`` also runs :func:`~robustkernels.eval.autoattack` on the same data,
            as ``autoattack`` (an :class:`~robustkernels.eval.AutoAttackOptions`: version, attacks,
            individual, state file...) sets it; its log is part of the report and its verdicts
            part of the worst case. ``autocast``, ``channels_last``, ``compile``, ``progress``
            and ``batch_size`` are evaluate's own and AutoAttack's at once.
        autocast: ``"bf16"``/``"fp16"`` for the model inside AutoAttack's gradient attacks (fp32
            verdicts); ``"auto"``: as :func:`~robustkernels.eval.autoattack` (timed bf16 for the
            fast version only).
        channels_last, compile: the attacks run a channels_last and / or ``torch.compile`` copy of
            the model (:mod:`~robustkernels.levers`; fp32; clean passes and verdicts on the
            model itself); ``"auto"``: channels_last for a CNN on images, no compile.
        bpda: ``"auto"``: if the input gradient through the model is missing or zero, attack
            through every non-differentiable :class:`~robustkernels.defences.Preprocessing`
            front-end with BPDA (identity backward; the forward is unchanged), and report the
            naive-versus-BPDA gap among the checks; if the gradient is there but the masking
            checks fail and such a front-end exists, evaluate again through BPDA and report
            that; ``True`` always, ``False`` never.
        surrogate: another model of the same task: PGD examples crafted on it (white-box on the
            surrogate, never touching ``model``) are tried on ``model`` as the ``"transfer"``
            attack, part of the worst case; a check warns if they beat the white-box attacks.
        corruptions: names from :data:`~robustkernels.eval.corruptions.CORRUPTIONS` (or ``"all"``):
            accuracy under each at the five CIFAR-10-C severities joins the report (a table,
            and ``corruptions.png`` among the plots).
        certify: ``"ibp"`` or ``"crown-ibp"``: the certified accuracy from those bounds
            (:func:`~robustkernels.eval.certified_accuracy`; deterministic models, Linf) joins the
            report beside the empirical figures, with a check that no certified sample fell to an
            attack (if one did, no certified figure is printed and the check fails).

        shard: ``(K, N)``: this run is shard K of N - it attacks batches K, K + N, K + 2N, ...
            (global batch indices at ``batch_size``; every shard reads all the data) and keeps
            their values in ``state_path`` (required; ``resume=True`` continues a killed shard).
            Shard 0 also runs the masking checks and keeps the examples, on the first samples.
            :func:`~robustkernels.eval.merge_eval_shards` (``robustkernels merge``) makes the
            report of the unsharded run from the N files, verdict for verdict: every random draw
            is a function of the seed (drawn from ``generator``: give each shard the same one) and
            the batch index. With ``suite="autoattack"``, AutoAttack's shard state goes to
            ``state_path + ".autoattack.json"``. Set ``channels_last`` and ``autocast``
            explicitly: "auto" times the model, and shards that chose differently do not merge.
            Returns this shard's own report. Under ``torch.distributed`` (``torchrun``) the
            processes share the batches the same way and every process returns the whole report.

    Every option is a field of :class:`~robustkernels.eval.options.EvalOptions`.

    The model's modes, ``requires_grad`` flags and the global RNG are restored; nothing of the
    caller's is modified. Each batch's random starts and noise come from the seed and the batch's
    index alone, so the verdicts do not depend on how the batches are shared. A sample is robust
    to an attack if it is classified correctly both clean and attacked; worst case: robust to
    every attack.
    """
    if options is None and "eps" not in fields:
        raise TypeError("evaluate() needs eps= (the radius of the threat model), or options=EvalOptions(eps=...)")
    opts = check_eval_options(model, typed_options(EvalOptions, options, fields, "evaluate"))
    rng_state = torch.get_rng_state()  # before the data: a shuffling DataLoader draws from it
    try:
        threat = ThreatModel.build(opts.eps, opts.norm, opts.bounds, opts.normalization)
        seed = draw_seed(opts.generator)
        share = Share.of(opts, model)
        bpda, note = opts.bpda, ""
        for _ in range(2):  # a second pass only to go through BPDA when the model's own gradients mislead
            with grad_enabled():  # inside the caller's torch.inference_mode() too
                report, setup = one_pass(model, data, opts, threat, bpda, seed, share)
            failed = [c.name for c in report.checks if c.name in MASKING_CHECKS and c.status == "warn"]
            if bpda != "auto" or not failed or setup.fronts or not with_bpda(model)[1]:
                break
            bpda, note = True, f" (the model's own gradients failed the masking checks: {', '.join(failed)})"
        report.gradients += note
        return report
    finally:
        torch.set_rng_state(rng_state)
