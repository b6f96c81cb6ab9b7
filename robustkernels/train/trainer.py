"""The training loop shared by every method: data order, optimizer and schedule, autocast,
channels_last, torch.compile, DDP, validation, JSON-lines logs, atomic checkpoints and resume.

Reproducibility: every random choice is a function of ``(seed, epoch)`` (data order) or
``(seed, step, rank)`` (augmentation, attack starts, LWTA / PNI noise), so a resumed run makes
the same steps as an uninterrupted one. The global RNG is reseeded per step and restored on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..attacks import PGD
from ..data import random_crop_flip
from ..nn.pni import pni_param_groups
from ..threat import frozen_model, non_negative, positive_int
from . import checkpoint as ckpt
from .distributed import all_sum, barrier, init_from_env, rank_and_world, shard
from .methods import Method, StepContext
from .schedules import LR_SCHEDULES, make_scheduler

OPTIMIZERS = ("sgd", "adam")
AUTOCAST = {None: None, "none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 rounds), stable across processes and runs."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return (h ^ (h >> 29)) & 0x7FFFFFFFFFFFFFFF


def _check_data(name: str, data) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)):
        raise TypeError(f"{name} must be a pair of tensors (x [N, C, H, W], y [N])")
    x, y = data
    if not x.is_floating_point() or x.dim() < 2:
        raise ValueError(f"{name}: x must be a floating-point tensor [N, ...], got {x.dtype} {list(x.shape)}")
    if y.dtype != torch.int64 or y.shape != (x.shape[0],):
        raise ValueError(f"{name}: y must be int64 of shape [{x.shape[0]}], got {y.dtype} {list(y.shape)}")
    if len(y) == 0:
        raise ValueError(f"{name} is empty")
    return x, y


def _make_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float):
    groups = pni_param_groups(model, weight_decay)  # PNI noise scales get no weight decay
    groups = [g for g in groups if g["params"]]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    return torch.optim.Adam(groups, lr=lr)


def accuracy_under_attack(model: nn.Module, method: Method, x: torch.Tensor, y: torch.Tensor, *, steps: int,
                          batch_size: int, seed: int, device: torch.device) -> tuple[float, float]:
    """(clean, PGD-``steps``) accuracy of ``model`` in eval mode on this rank's share of (x, y),
    summed over ranks."""
    rank, world = rank_and_world()
    idx = shard(torch.arange(len(y)), rank, world)
    attack = PGD(model, eps=method.eps, alpha=2.5 * method.eps / steps, steps=steps, norm=method.norm,
                 bounds=method.bounds, normalization=method.normalization,
                 generator=torch.Generator().manual_seed(mix_seed(seed, rank, 1)))
    correct_clean = correct_adv = 0
    for batch in idx.split(batch_size):
        xb, yb = x[batch].to(device), y[batch].to(device)
        with frozen_model(model, "eval"), torch.no_grad():
            correct_clean += int((attack.logits(xb).argmax(1) == yb).sum())
        x_adv = attack(xb, yb)
        with frozen_model(model, "eval"), torch.no_grad():
            correct_adv += int((attack.logits(x_adv).argmax(1) == yb).sum())
    clean, adv, n = all_sum([correct_clean, correct_adv, len(idx)], device)
    return clean / n, adv / n


def fit(model: nn.Module, method: Method, train_data, *, epochs: int = 10, batch_size: int = 128,
        lr: float = 0.1, optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 5e-4,
        schedule: str | None = None, augment: bool = False, val_data=None, val_attack_steps: int = 10,
        autocast: str | None = None, channels_last: bool = False, compile: bool = False, seed: int = 0,
        log_path: str | os.PathLike | None = None, checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: int | None = None, resume: bool = False, progress: bool = True,
        callback: Callable[[dict], None] | None = None, meta: dict | None = None) -> list[dict]:
    """Train ``model`` **in place** with ``method`` on ``train_data = (x, y)``; returns the
    per-epoch history (also written as JSON lines to ``log_path``).

    Args:
        model: on its training device; its parameters are updated (and, with ``channels_last``,
            its memory format changed). Under ``torchrun`` it is wrapped in DDP internally.
        method: a :class:`~robustkernels.train.methods.Method`, e.g. ``make_method("pgd_at", eps=8/255)``.
        train_data / val_data: ``(x [N, C, H, W] in bounds, y [N] int64)`` tensors (CPU is fine).
        batch_size: the global batch; each of W processes takes ``batch_size / W`` of it.
        schedule: ``constant|step|cyclic|cosine`` learning rate per optimizer step (default:
            the method's, else ``step``).
        autocast: ``None``, ``"bf16"`` or ``"fp16"`` (with a gradient scaler).
        compile: ``torch.compile`` the model for training and attacks.
        checkpoint_path: written atomically at each epoch end and every ``checkpoint_every``
            steps; ``resume=True`` continues from it (model, optimizer, schedule, method state,
            position in the epoch, history).
        callback: called after every step with ``{"epoch", "batch", "step", "loss"}``.
        meta: stored in the checkpoint as ``"meta"`` (e.g. how to rebuild the model).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(method, Method):
        raise TypeError(f"method must be a robustkernels.train.Method, got {type(method).__name__}")
    epochs, batch_size = positive_int("epochs", epochs), positive_int("batch_size", batch_size)
    val_attack_steps = positive_int("val_attack_steps", val_attack_steps)
    if not non_negative("lr", lr) > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    non_negative("weight_decay", weight_decay)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    schedule = schedule or getattr(method, "default_schedule", "step")
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    if autocast not in AUTOCAST:
        raise ValueError(f"autocast must be None, 'bf16' or 'fp16', got {autocast!r}")
    if checkpoint_every is not None:
        positive_int("checkpoint_every", checkpoint_every)
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path")
    x, y = _check_data("train_data", train_data)
    if val_data is not None:
        _check_data("val_data", val_data)

    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    distributed = init_from_env(device)
    rank, world = rank_and_world()
    if batch_size < world:
        raise ValueError(f"batch_size={batch_size} is smaller than the {world} processes")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model
    method.bind(net, len(y))
    trained = net
    if distributed:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        trained = torch.compile(ddp) if compile else ddp
    opt = _make_optimizer(model, optimizer, lr, momentum, weight_decay)
    batches_per_epoch = -(-len(y) // batch_size)
    scheduler = make_scheduler(opt, schedule, epochs * batches_per_epoch * method.steps_per_batch)
    dtype = AUTOCAST[autocast]
    ctx = StepContext(
        autocast=(lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext,
        scaler=torch.amp.GradScaler(device.type) if dtype == torch.float16 else None,
    )

    start_epoch, start_batch, step, history, partial = 0, 0, 0, [], [0.0, 0.0, 0.0, 0.0]
    if resume and os.path.isfile(checkpoint_path):
        state = ckpt.load(checkpoint_path, device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ctx.scaler is not None and state.get("scaler"):
            ctx.scaler.load_state_dict(state["scaler"])
        method.load_state_dict(state["method"])
        start_epoch, start_batch, step = state["epoch"], state["batch"], state["step"]
        history, partial = state["history"], state["partial"]
    if log_path is not None and rank == 0:
        with open(log_path, "w") as f:  # a resumed run rewrites the log up to its checkpoint
            f.writelines(json.dumps(r) + "\n" for r in history)

    def save(epoch: int, batch: int, sums: list[float]) -> None:
        if checkpoint_path is not None and rank == 0:
            ckpt.save_atomic({
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else None,
                "method": method.state_dict(), "method_name": method.name, "epoch": epoch, "batch": batch,
                "step": step, "history": history, "partial": sums, "seed": seed, "meta": meta or {},
            }, checkpoint_path)
        barrier()

    rng_state = torch.get_rng_state()
    try:
        for epoch in range(start_epoch, epochs):
            if start_batch == 0:
                method.start_epoch(epoch, epochs)
                partial = [0.0, 0.0, 0.0, 0.0]  # loss * n, correct, n, seconds
            order = torch.randperm(len(y), generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))
            batches = order.split(batch_size)
            bar = tqdm(total=len(batches), initial=start_batch, desc=f"{method.name} epoch {epoch + 1}/{epochs}",
                       disable=not progress or rank != 0, leave=False, dynamic_ncols=True)
            for b in range(start_batch, len(batches)):
                tic = time.perf_counter()
                step_seed = mix_seed(seed, step, rank)
                torch.manual_seed(step_seed)  # LWTA / PNI noise, dropout
                method.generator.manual_seed(mix_seed(step_seed, 1))
                idx = shard(batches[b], rank, world)
                xb, yb = x[idx].to(device), y[idx].to(device)
                if augment:
                    xb = random_crop_flip(xb, generator=torch.Generator().manual_seed(mix_seed(step_seed, 2)))
                if channels_last and xb.dim() == 4:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                model.train()
                result = method.train_step(trained, opt, scheduler, xb, yb, ctx)
                loss = float(result.loss.detach())
                correct = int((result.logits.detach().argmax(1) == yb).sum())
                partial = [partial[0] + loss * len(yb), partial[1] + correct, partial[2] + len(yb),
                           partial[3] + time.perf_counter() - tic]
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{correct / max(len(yb), 1):.3f}")
                if callback is not None:
                    callback({"epoch": epoch, "batch": b, "step": step, "loss": loss})
                if checkpoint_every and step % checkpoint_every == 0 and b + 1 < len(batches):
                    save(epoch, b + 1, partial)
            bar.close()
            start_batch = 0
            loss_sum, correct, seen, seconds = all_sum(partial, device)
            record = {"epoch": epoch + 1, "step": step, "lr": opt.param_groups[0]["lr"], "loss": loss_sum / seen,
                      "train_acc": correct / seen, "train_seconds": seconds / world}
            record.update(method.epoch_metrics())  # the figures this epoch trained with
            if val_data is not None:
                clean, adv = accuracy_under_attack(net, method, *val_data, steps=val_attack_steps,
                                                   batch_size=batch_size, seed=mix_seed(seed, epoch, 7), device=device)
                method.end_validation(clean, adv)
                record.update(val_clean_acc=clean, val_pgd_acc=adv)
            history.append(record)
            if log_path is not None and rank == 0:
                with open(log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
            save(epoch + 1, 0, [0.0, 0.0, 0.0, 0.0])
    finally:
        torch.set_rng_state(rng_state)
    return history
