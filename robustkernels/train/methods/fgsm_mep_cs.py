"""FGSM-MEP-CS: FGSM-MEP (the momentum-based prior of Jia et al., ECCV 2022) with ConvergeSmooth
(Zhao, Zhang, Kong & Yin, "Fast Adversarial Training with Smooth Convergence", ICCV 2023), as the
FastAT Benchmark runs it (Pan & Yao 2026, ``fast_at/fgsm_mep_cs.py`` with
``configs/cifar10/fgsm_mep_cs.yaml``; the same loop as the paper's ``FGSM_MEP_CS.py``).

The prior is FGSM-PGI's (:mod:`.fgsm_pgi`: a perturbation and a gradient momentum per sample,
reset to ``+-eps`` / 0 every ``reset_every`` = 40 epochs), without PGI's regulariser (the
benchmark's ``reg_single`` / ``reg_multi`` are off): the gradient ``g`` is taken at ``x + delta``
(not clipped to the bounds, as in both codes), the batch trains on ``x_adv = x + clip(delta +
alpha sign(g))`` with the loss ``CE(f(x_adv), s) + CS(L_n)``, ``L_n = CE(f(x), s)`` on the clean
batch, ``s`` the targets smoothed to ``factor`` (0.6) on the true class (also the attack's loss),
and ConvergeSmooth's term ``CS`` as in :mod:`.fgsm_rs_cs`.

Defaults are the benchmark's CIFAR-10 config: alpha = eps, ``momentum_decay`` 0.3, ``factor``
0.6, ``gamma`` 0.03, ``ratio`` 1, ``stride`` 1, ``cs_weight`` 1, ``decay_epochs`` (0, 100, 105,
110); it also trains with label smoothing 0.4 (``augmentations=["label_smoothing:0.4"]``, stacked
under ``factor``), weight averaging 0.9995 and a one-cycle learning rate. The prior stays in the
frame of the (cropped, flipped) input, as there. Linf only."""

from __future__ import annotations

from .base import BatchResult
from .fgsm_pgi import PriorGuided, training_gradient
from .fgsm_rs_cs import ConvergeSmoothMixin, factor_smoothed


class FGSMMEPCS(ConvergeSmoothMixin, PriorGuided):
    """FGSM-MEP with ConvergeSmooth; see the module's docstring.

    Args:
        momentum_decay, reset_every: the prior's (0.3, 40), as :class:`~.fgsm_pgi.FGSMPGI`.
        factor, gamma, ratio, stride, cs_weight, decay_epochs: ConvergeSmooth's, as
            :class:`~.fgsm_rs_cs.FGSMRSCS` (0.6, 0.03, 1, 1, 1, (0, 100, 105, 110)).
        alpha: step size (default eps); other arguments as :class:`Method`.
    """

    name = "fgsm_mep_cs"

    def __init__(self, *, factor: float = 0.6, gamma: float = 0.03, ratio: float = 1.0, stride: int = 1,
                 cs_weight: float = 1.0, decay_epochs=(0, 100, 105, 110), **kwargs):
        super().__init__(**kwargs)
        self.init_cs(factor, gamma, ratio, stride, cs_weight, decay_epochs)

    def batch_loss(self, model, x, y, ctx):
        delta, momentum = self.prior(x, ctx)
        with ctx.autocast():
            smoothed = lambda logits: factor_smoothed(logits, y, ctx, self.factor)  # noqa: E731
            _, grad = training_gradient(self, x + delta, smoothed)
            x_adv, next_delta, momentum = self.guided_steps(x, delta, momentum, grad)
            logits = self.forward(model, x_adv)
            logits_clean = self.forward(self.net, x)
        self.write_back(next_delta, momentum, ctx)
        loss_normal = self.smoothed_ce(logits_clean, y, ctx)
        loss = self.smoothed_ce(logits, y, ctx) + self.cs.term(loss_normal, self.epoch)
        self.cs.record(loss_normal, len(x))
        return BatchResult(loss + self.regularizer(), logits)
