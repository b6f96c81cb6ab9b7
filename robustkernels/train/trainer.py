"""The training loop shared by every method: data order, optimizer and schedule, autocast,
channels_last, torch.compile, DDP, validation, JSON-lines logs, atomic checkpoints and resume.

Reproducibility: every random choice is a function of ``(seed, epoch)`` (data order) or
``(seed, step, rank)`` (augmentation, attack starts, LWTA / PNI noise), so a resumed run makes
the same steps as an uninterrupted one. The global RNG is reseeded per step and restored on exit.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable

import torch
from torch import nn

from ..attacks import PGD
from ..data import random_crop_flip
from ..nn.pni import pni_param_groups
from ..progress import progress_bar
from ..threat import frozen_model, non_negative, positive_int
from . import checkpoint as ckpt
from .data import TrainData
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


def json_line(record: dict) -> str:
    """One JSON line; a non-finite float is written as ``null`` (bare ``NaN`` is not JSON)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    return json.dumps(clean, allow_nan=False) + "\n"


def run_fingerprint(model: nn.Module, method: Method, *, train_size: int, batch_size: int, seed: int,
                    meta: dict | None) -> dict:
    """What a checkpoint must match to be resumed by this run (``epochs`` may grow: a resumed run
    may train for longer)."""
    return {"method": method.name, "seed": seed, "train_size": train_size, "batch_size": batch_size,
            "parameters": {k: list(v.shape) for k, v in model.state_dict().items()}, "meta": meta or {}}


def check_resumable(path: str, saved: dict | None, current: dict) -> None:
    """A ``ValueError`` listing what differs between this run and the one that wrote ``path``."""
    if saved is None:
        raise ValueError(f"checkpoint {path!r} does not say which run wrote it; pass resume='force' to load it anyway")
    diffs = []
    for key, value in current.items():
        if saved.get(key) == value:
            continue
        if key == "parameters":
            theirs = saved.get(key) or {}
            names = sorted(set(value) ^ set(theirs) | {k for k in value if theirs.get(k) != value[k]})
            diffs.append(f"model parameters ({len(names)} differ in name or shape, e.g. {names[0]!r})")
        else:
            diffs.append(f"{key}: {saved.get(key)!r} in the checkpoint, {value!r} now")
    if diffs:
        raise ValueError(f"checkpoint {path!r} belongs to another run - " + "; ".join(diffs)
                         + " (resume='force' / --force-resume loads it anyway)")


def _make_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float):
    groups = pni_param_groups(model, weight_decay)  # PNI noise scales get no weight decay
    groups = [g for g in groups if g["params"]]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    return torch.optim.Adam(groups, lr=lr)


def accuracy_under_attack(model: nn.Module, method: Method, data: TrainData, *, steps: int, batch_size: int,
                          seed: int, device: torch.device) -> tuple[float, float]:
    """(clean, PGD-``steps``) accuracy of ``model`` in eval mode on this rank's share of
    ``data``, summed over ranks."""
    rank, world = rank_and_world()
    idx = shard(torch.arange(len(data)), rank, world)
    attack = PGD(model, eps=method.eps, alpha=2.5 * method.eps / steps, steps=steps, norm=method.norm,
                 bounds=method.bounds, normalization=method.normalization,
                 generator=torch.Generator().manual_seed(mix_seed(seed, rank, 1)))
    correct_clean = correct_adv = 0
    for xb, yb in data.batches(idx.split(batch_size)):
        xb, yb = xb.to(device), yb.to(device)
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
    """Train ``model`` **in place** with ``method`` on ``train_data``; returns the
    per-epoch history (also written as JSON lines to ``log_path``).

    Args:
        model: on its training device; its parameters are updated (and, with ``channels_last``,
            its memory format changed). Under ``torchrun`` it is wrapped in DDP internally.
        method: a :class:`~robustkernels.train.methods.Method`, e.g. ``make_method("pgd_at", eps=8/255)``.
        train_data / val_data: ``(x [N, C, H, W] in bounds, y [N] int64)`` tensors (CPU is fine),
            or a map-style Dataset or DataLoader of ``(x, y)`` samples, read batch by batch in the
            trainer's order (a DataLoader's workers and collate_fn are used, not its sampler).
        batch_size: the global batch; each of W processes takes ``batch_size / W`` of it.
        schedule: ``constant|step|cyclic|cosine`` learning rate per optimizer step (default:
            the method's, else ``step``).
        autocast: ``None``, ``"bf16"`` or ``"fp16"`` (with a gradient scaler).
        compile: ``torch.compile`` the model for training and attacks.
        checkpoint_path: written atomically at each epoch end and every ``checkpoint_every``
            steps; ``resume=True`` continues from it (model, optimizer, schedule, method state,
            position in the epoch, history) after checking that it was written by this run
            (method, seed, data size, batch size, parameter shapes, ``meta``);
            ``resume="force"`` skips that check.
        callback: called after every step with ``{"epoch", "batch", "step", "loss"}``.
        meta: stored in the checkpoint as ``"meta"`` (e.g. how to rebuild the model).

    Raises:
        FloatingPointError: the training loss became NaN or inf (fp16 steps that the gradient
            scaler skipped excepted); the last checkpoint written stays as it was.
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
    if resume not in (False, True, "force"):
        raise ValueError(f"resume must be True, False or 'force', got {resume!r}")
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path")
    if checkpoint_path is not None:
        checkpoint_path = ckpt.check_path(checkpoint_path)
    if log_path is not None:
        log_path = ckpt.check_path(log_path, "log_path")
    train = TrainData("train_data", train_data)
    val = TrainData("val_data", val_data) if val_data is not None else None

    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    distributed = init_from_env(device)
    rank, world = rank_and_world()
    if batch_size < world:
        raise ValueError(f"batch_size={batch_size} is smaller than the {world} processes")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model
    method.bind(net, len(train))
    trained = net
    if distributed:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        trained = torch.compile(ddp) if compile else ddp
    opt = _make_optimizer(model, optimizer, lr, momentum, weight_decay)
    batches_per_epoch = -(-len(train) // batch_size)
    scheduler = make_scheduler(opt, schedule, epochs * batches_per_epoch * method.steps_per_batch)
    dtype = AUTOCAST[autocast]
    ctx = StepContext(
        autocast=(lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext,
        scaler=torch.amp.GradScaler(device.type) if dtype == torch.float16 else None,
    )

    start_epoch, start_batch, step, history, partial = 0, 0, 0, [], [0.0, 0.0, 0.0, 0.0]
    fingerprint = run_fingerprint(model, method, train_size=len(train), batch_size=batch_size, seed=seed, meta=meta)
    if resume and os.path.isfile(checkpoint_path):
        state = ckpt.load(checkpoint_path, device)
        if resume != "force":
            check_resumable(checkpoint_path, state.get("run"), fingerprint)
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
            f.writelines(json_line(r) for r in history)

    def save(epoch: int, batch: int, sums: list[float]) -> None:
        if checkpoint_path is not None and rank == 0:
            ckpt.save_atomic({
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else None,
                "method": method.state_dict(), "method_name": method.name, "epoch": epoch, "batch": batch,
                "step": step, "history": history, "partial": sums, "seed": seed, "meta": meta or {},
                "run": fingerprint,
            }, checkpoint_path)
        barrier()

    rng_state = torch.get_rng_state()
    try:
        for epoch in range(start_epoch, epochs):
            if start_batch == 0:
                method.start_epoch(epoch, epochs)
                partial = [0.0, 0.0, 0.0, 0.0]  # loss * n, correct, n, seconds
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))
            batches = order.split(batch_size)
            bar = progress_bar(
                total=len(batches),
                initial=start_batch,
                desc=f"{method.name} epoch {epoch + 1}/{epochs}",
                enabled=progress and rank == 0,
                leave=False,
            )
            stream = train.batches([shard(batches[b], rank, world) for b in range(start_batch, len(batches))])
            for b, (xb, yb) in zip(range(start_batch, len(batches)), stream):
                tic = time.perf_counter()
                step_seed = mix_seed(seed, step, rank)
                torch.manual_seed(step_seed)  # LWTA / PNI noise, dropout
                method.generator.manual_seed(mix_seed(step_seed, 1))
                xb, yb = xb.to(device), yb.to(device)
                if augment:
                    xb = random_crop_flip(xb, generator=torch.Generator().manual_seed(mix_seed(step_seed, 2)))
                if channels_last and xb.dim() == 4:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                model.train()
                scale = ctx.scaler.get_scale() if ctx.scaler is not None else None
                result = method.train_step(trained, opt, scheduler, xb, yb, ctx)
                loss = float(result.loss.detach())
                if not math.isfinite(loss):
                    if scale is None or ctx.scaler.get_scale() >= scale:  # not a step the fp16 scaler skipped
                        kept = f"; {checkpoint_path!r} keeps the last good state" if checkpoint_path else ""
                        raise FloatingPointError(f"training loss is {loss} at step {step + 1} (epoch {epoch + 1}, "
                                                 f"batch {b + 1}): stopping{kept}")
                else:  # a skipped fp16 step does not enter the epoch's sums
                    correct = int((result.logits.detach().argmax(1) == yb).sum())
                    partial = [partial[0] + loss * len(yb), partial[1] + correct, partial[2] + len(yb),
                               partial[3] + time.perf_counter() - tic]
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                if callback is not None:
                    callback({"epoch": epoch, "batch": b, "step": step, "loss": loss})
                if checkpoint_every and step % checkpoint_every == 0 and b + 1 < len(batches):
                    save(epoch, b + 1, partial)
            bar.close()
            start_batch = 0
            loss_sum, correct, seen, seconds = all_sum(partial, device)
            record = {
                "epoch": epoch + 1,
                "step": step,
                "lr": opt.param_groups[0]["lr"],
                "loss": loss_sum / max(seen, 1),
                "train_acc": correct / max(seen, 1),
                "train_seconds": seconds / world,
            }
            record.update(method.epoch_metrics())  # the figures this epoch trained with
            if val_data is not None:
                clean, adv = accuracy_under_attack(net, method, val, steps=val_attack_steps,
                                                   batch_size=batch_size, seed=mix_seed(seed, epoch, 7), device=device)
                method.end_validation(clean, adv)
                record.update(val_clean_acc=clean, val_pgd_acc=adv)
            history.append(record)
            if log_path is not None and rank == 0:
                with open(log_path, "a") as f:
                    f.write(json_line(record))
            save(epoch + 1, 0, [0.0, 0.0, 0.0, 0.0])
    finally:
        torch.set_rng_state(rng_state)
    return history
