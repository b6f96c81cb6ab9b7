"""The evaluation's runner: one typed object that :func:`~robustkernels.eval.evaluate` and the
masking checks share for batched passes, attacks and fresh noise."""

from __future__ import annotations

import time

import torch
from torch import nn

from ..common import frozen_model, progress_bar
from ..ops import draw_seed
from ..threat import ThreatModel
from .options import EvalOptions
from .probe import checked_logits
from .setup import ModelSetup, eot_and_repeats
from .suite import make_attack


class EvalRunner:
    """What :func:`~robustkernels.eval.evaluate` and its masking checks
    (:func:`~robustkernels.eval.masking.run_checks`) run the model with: batched forward passes
    and attacks over (x, y) on the model's device, fresh noise per pass, and the evaluation's
    attacks by name.

    Attributes:
        model: the model the verdicts use; ``attacked``: the copy the attacks run (BPDA, levers).
        threat: the threat model; ``eot`` / ``reps``: EOT passes per attack step and evaluation
            passes; ``generator``: the evaluation's source of seeds, restarted per batch from
            ``seed`` (:meth:`reseed`).
    """

    def __init__(self, model: nn.Module, setup: ModelSetup, threat: ThreatModel, opts: EvalOptions, seed: int):
        self.model, self.attacked, self.device, self.forward = model, setup.attacked, setup.device, setup.forward
        self.threat, self.seed = threat, seed
        self.bs, self.progress, self.generator = opts.batch_size, opts.progress, torch.Generator()
        self.steps, self.restarts = opts.steps, opts.restarts
        self.eot, self.reps = eot_and_repeats(setup.stochastic, opts.eot_iter, opts.repeats)

    def build(self, name: str, eps: float, eot: int | None = None):
        return make_attack(name, self.attacked, eps=eps, eot_iter=self.eot if eot is None else eot,
                           generator=self.generator, steps=self.steps, restarts=self.restarts,
                           **self.threat.space_kwargs())

    def reseed(self, index: int) -> None:
        """Start the draws of batch ``index`` (negative: a phase after the batches) from a seed
        that is a function of the evaluation's seed and the index alone: a batch draws the same
        random starts and noise whichever process, shard or order attacks it."""
        self.generator.manual_seed((self.seed * 1_000_003 + index * 1_009 + 17) % 2**63)

    def fresh_noise(self) -> None:
        """Reseed the global RNG (LWTA / PNI noise) from the evaluation's generator: each pass
        draws new noise; the attacks restore the RNG on exit, which would replay their draws."""
        torch.manual_seed(draw_seed(self.generator))

    def predict(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted labels, max softmax) for every row of x, eval mode."""
        self.fresh_noise()
        labels, probs = [], []
        with frozen_model(self.model, "eval"), torch.no_grad():
            for xb in x.split(self.bs):
                p = checked_logits(self.forward(xb.to(self.device)), len(xb)).float().softmax(dim=1)
                conf, pred = p.max(dim=1)
                labels.append(pred.cpu())
                probs.append(conf.cpu())
        return torch.cat(labels), torch.cat(probs)

    def attack(self, attack, x, y, desc) -> tuple[torch.Tensor, float]:
        out, tic = [], time.perf_counter()
        for xb, yb in progress_bar(list(zip(x.split(self.bs), y.split(self.bs))), desc=desc, enabled=self.progress,
                                   leave=False):
            self.fresh_noise()
            out.append(attack(xb.to(self.device), yb.to(self.device)).cpu())
        return torch.cat(out), time.perf_counter() - tic
