"""The training loop shared by every method: data order, optimizer and schedule, autocast,
channels_last, torch.compile, DDP, validation, JSON-lines logs, atomic checkpoints and resume.

Reproducibility: every random choice is a function of ``(seed, epoch)`` (data order) or
``(seed, step, rank)`` (augmentation, attack starts, LWTA / PNI noise), so a resumed run makes
the same steps as an uninterrupted one. The global RNG is reseeded per step and restored on exit.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import time
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from ..attacks import FGSM, PGD
from ..common import dtype_hint, frozen_model, model_device, progress_bar, rank_and_world, typed_options
from ..data import CropFlip, IndexedData, check_label_range
from ..nn import pni_param_groups
from ..threat import check_logits_shape, default_step
from . import checkpoint as ckpt
from .auto_levers import checked_levers
from .averaging import WeightAverage
from .distributed import all_sum, barrier, init_from_env, shard
from .methods import Method, StepContext
from .options import AUTOCAST, FitOptions, check_options
from .overfit import overfit_message
from .schedules import check_same_length, make_scheduler
from .seeds import mix_seed
from .state import EpochSums, Run


def json_line(record: dict) -> str:
    """One JSON line; a non-finite float is written as ``null`` (bare ``NaN`` is not JSON)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    return json.dumps(clean, allow_nan=False) + "\n"


def run_fingerprint(model: nn.Module, method: Method, *, train_size: int, batch_size: int, seed: int,
                    meta: dict | None, weight_average: float | None = None) -> dict:
    """What a checkpoint must match to be resumed by this run (``epochs`` may grow: a resumed run
    may train for longer)."""
    # weight_average None matches checkpoints written before averaging existed (no such key: None)
    return {"method": method.name, "seed": seed, "train_size": train_size, "batch_size": batch_size,
            "parameters": {k: list(v.shape) for k, v in model.state_dict().items()}, "meta": meta or {},
            "weight_average": weight_average}


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


def validate(model: nn.Module, method: Method, data: IndexedData, *, steps: int, batch_size: int, seed: int,
             device: torch.device) -> dict:
    """Clean, FGSM and PGD-``steps`` accuracy of ``model`` (eval mode) at the method's full eps
    on this rank's share of ``data``, summed over ranks: ``{"val_clean_acc", "val_fgsm_acc",
    "val_pgd_acc"}``."""
    rank, world = rank_and_world()
    idx = shard(torch.arange(len(data)), rank, world)
    eps = method.target_eps
    threat = method.space.space_kwargs()
    pgd = PGD(model, eps=eps, alpha=default_step(eps, steps), steps=steps, **threat,
              generator=torch.Generator().manual_seed(mix_seed(seed, rank, 1)))
    fgsm = FGSM(model, eps=eps, **threat)
    correct = [0, 0, 0]
    for xb, yb in data.batches(idx.split(batch_size)):
        xb, yb = xb.to(device), yb.to(device)
        for i, x_in in enumerate((xb, fgsm(xb, yb), pgd(xb, yb))):
            with frozen_model(model, "eval"), torch.no_grad():
                correct[i] += int((pgd.oracle().logits(x_in).argmax(1) == yb).sum())
    *totals, n = all_sum([*correct, len(idx)], device)
    return dict(zip(("val_clean_acc", "val_fgsm_acc", "val_pgd_acc"), (c / n for c in totals)))


def fit(model: nn.Module, method: Method, train_data, options: FitOptions | None = None, *, val_data=None,
        **fields) -> list[dict]:
    """Train ``model`` **in place** with ``method`` on ``train_data``; returns the
    per-epoch history (also written as JSON lines to ``log_path``).

    Args:
        model: on its training device; its parameters are updated (and, with ``channels_last``,
            its memory format changed). Under ``torchrun`` it is wrapped in DDP internally.
        method: a :class:`~robustkernels.train.methods.Method`, e.g. ``make_method("pgd_at", eps=8/255)``.
        options: a :class:`~robustkernels.train.options.FitOptions` (typed: its fields are the
            arguments below), or those fields as keywords (which override it where both are given).
        train_data / val_data: ``(x [N, C, H, W] in bounds, y [N] int64)`` tensors (CPU is fine),
            or a map-style Dataset or DataLoader of ``(x, y)`` samples, read batch by batch in the
            trainer's order (a DataLoader's workers and collate_fn are used; its shuffle is
            replaced by the trainer's seeded order).
        epochs, lr, optimizer (``sgd|adam``), momentum, weight_decay: the usual.
        batch_size: the global batch; each of W processes takes ``batch_size / W`` of it.
            Default: a DataLoader's own ``batch_size``, else 128. A DataLoader whose settings fit
            cannot honour (another batch size, ``drop_last``, a custom sampler or batch_sampler)
            is refused in one line naming them: fit draws its own seeded order, so that resume
            and multi-process runs are exact.
        schedule: ``constant|step|cyclic|cosine|onecycle`` learning rate per optimizer step
            (default: the method's, else ``step``); ``onecycle`` is torch's ``OneCycleLR`` with the
            momentum cycled, as the FastAT Benchmark trains (:func:`~robustkernels.train.lr_factor`).
        augment: random crop (padding 4) and horizontal flip of every batch.
        augmentations: applied after the crop and flip, in order, with any method: names or
            objects of :mod:`robustkernels.train.augment` (``"label_smoothing:0.1"``,
            ``"gaussian_noise:0.05"``, ``"mixup:1.0"``, ``"cutmix:1.0"``). Mixing ones train on
            soft targets; the method's attack uses the label of the larger share.
        val_attack_steps: PGD steps of the per-epoch validation (clean, FGSM and PGD accuracy).
        val_attack: ``"pgd"`` (that validation) or ``"autoattack-fast"``: also the robust accuracy of
            :func:`~robustkernels.eval.autoattack` ``version="fast"`` (``val_fast_acc``).
        keep: ``"last"`` (default) or ``"best-robust"``: at the end the model (and the last
            checkpoint) holds the weights of the epoch with the best validation robust accuracy
            (``val_fast_acc`` with ``val_attack="autoattack-fast"``, else ``val_pgd_acc``): robust-overfitting
            early stopping (Rice et al. 2020). That epoch's record gets ``"kept": true``.
        weight_average: a decay tau in (0, 1) (the FastAT Benchmark's 0.9995) keeps an
            exponential moving average of the weights after every batch, with a warm-up of the
            decay and BatchNorm statistics averaged alike (:mod:`~robustkernels.train.averaging`).
            Validation, ``keep="best-robust"`` and ``val_attack="autoattack-fast"`` read the average, the
            checkpoint holds both (resume is exact), and the model ends holding the average.
        autocast: ``None``, ``"bf16"`` or ``"fp16"`` (with a gradient scaler).
        channels_last, compile: memory format and ``torch.compile`` for training and attacks.
        auto_levers: the levers among autocast / channels_last / compile that pay off on this device
            (:func:`~robustkernels.train.auto_levers.device_levers`); explicit settings win. A lever the
            model fails a forward and backward pass with is dropped with a warning if ``auto_levers``
            chose it and refused with a ValueError if asked for
            (:func:`~robustkernels.train.auto_levers.checked_levers`).
        on_overfit: ``"warn"`` (default), ``"stop"`` or ``"restore"``: what to do when the
            validation history shows catastrophic overfitting (PGD accuracy collapsing while FGSM
            accuracy rises). It is always logged (``"overfit": true``) and warned about;
            ``"stop"`` ends the run after that epoch, ``"restore"`` reloads the weights and
            optimizer of the last good epoch and ends the run.
        seed: every random choice is a function of it (data order, starts, noise, augmentation).
        checkpoint_path: written atomically at each epoch end and every ``checkpoint_every``
            steps; ``resume=True`` continues from it (model, optimizer, schedule, method state,
            position in the epoch, history) after checking that it was written by this run
            (method, seed, data size, batch size, parameter shapes, ``meta``);
            ``resume="force"`` skips that check.
        log_path: JSON lines, one per epoch. progress: tqdm bars (silent off a terminal).
        callback: called after every step with ``{"epoch", "batch", "step", "loss"}``.
        on_epoch: called (on rank 0) with each epoch's record as soon as it is written.
        meta: stored in the checkpoint as ``"meta"`` (e.g. how to rebuild the model).

    Raises:
        FloatingPointError: the training loss became NaN or inf (fp16 steps that the gradient
            scaler skipped excepted); the last checkpoint written stays as it was.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(method, Method):
        raise TypeError(f"method must be a robustkernels.train.Method, got {type(method).__name__}")
    opts = typed_options(FitOptions, options, fields, "fit")
    train = IndexedData("train_data", train_data)
    if opts.batch_size is None:
        opts.batch_size = train.loader_batch_size or 128
    opts = check_options(opts, getattr(method, "default_schedule", "step"), val_data is not None)
    train.refuse_ignored_loader_settings(opts.batch_size)
    val = IndexedData("val_data", val_data) if val_data is not None else None
    run = setup(model, method, opts, len(train), train.example)
    check_labels(run, opts, train, val)
    if opts.resume and os.path.isfile(opts.checkpoint_path):
        resume(run, opts)
    if opts.log_path is not None and run.rank == 0:
        with open(opts.log_path, "w") as f:  # a resumed run rewrites the log up to its checkpoint
            f.writelines(json_line(r) for r in run.history)
    rng_state = torch.get_rng_state()
    last_good = snapshot(run) if opts.on_overfit == "restore" and run.batch == 0 else None
    try:
        for epoch in range(run.epoch, opts.epochs):
            train_epoch(run, opts, train, epoch)
            record = end_epoch(run, opts, val, epoch)
            collapsed = record.get("overfit") and opts.on_overfit != "warn"
            if collapsed and opts.on_overfit == "restore":
                restore(run, last_good, record)
            if opts.log_path is not None and run.rank == 0:
                with open(opts.log_path, "a") as f:
                    f.write(json_line(record))
            if opts.on_epoch is not None and run.rank == 0:
                opts.on_epoch(record)
            track_best(run, opts, record)
            save_checkpoint(run, opts, epoch + 1, 0)
            if collapsed:
                break
            if opts.on_overfit == "restore":
                last_good = snapshot(run)
        keep_best(run, opts)
    finally:
        torch.set_rng_state(rng_state)
    return run.history


def track_best(run: Run, opts: FitOptions, record: dict) -> None:
    """keep="best-robust": remember the weights of the best validation robust accuracy so far."""
    if opts.keep != "best-robust":
        return
    score = record["val_fast_acc" if opts.val_attack == "autoattack-fast" else "val_pgd_acc"]
    if run.best is None or score > run.best["score"]:
        weights = (run.average.model if run.average is not None else run.model).state_dict()
        run.best = {"epoch": record["epoch"], "score": score, "model": copy.deepcopy(weights)}


def keep_best(run: Run, opts: FitOptions) -> None:
    """The weights the run ends with, in the caller's model: keep="best-robust": the best
    epoch's (averaged, with weight averaging), also into the last checkpoint; else, with weight
    averaging, the average (the checkpoint already holds it beside the training weights)."""
    if opts.keep != "best-robust" or run.best is None:
        if run.average is not None:
            run.model.load_state_dict(run.average.model.state_dict())
        return
    run.model.load_state_dict(run.best["model"])
    run.kept_best = True
    for record in run.history:
        record["kept"] = record["epoch"] == run.best["epoch"]
    save_checkpoint(run, opts, len(run.history), 0)


def validate_fast(model: nn.Module, method: Method, data: IndexedData, *, batch_size: int, seed: int) -> float:
    """AutoAttack ``version="fast"``'s robust accuracy of ``model`` on ``data`` at the method's
    full eps (every process takes its share of the batches; the verdicts are gathered)."""
    from ..eval import autoattack

    report = autoattack(model, data.source(), eps=method.target_eps, version="fast", batch_size=batch_size,
                        seed=seed, progress=False, **method.space.space_kwargs())
    return report.robust_accuracy.mean


def snapshot(run: Run) -> dict:
    """A copy of the weights, the average and the optimizer state at the current epoch boundary."""
    return {"epoch": len(run.history), "model": copy.deepcopy(run.model.state_dict()),
            "optimizer": copy.deepcopy(run.optimizer.state_dict()),
            "average": copy.deepcopy(run.average.state_dict()) if run.average is not None else None}


def restore(run: Run, good: dict | None, record: dict) -> None:
    """Go back to ``good`` (from :func:`snapshot`); ``record["restored_epoch"]`` says which epoch."""
    if good is None:  # resumed mid-epoch: no epoch boundary in this process to return to
        warnings.warn("on_overfit='restore': no earlier epoch of this process to restore; keeping the last weights",
                      RuntimeWarning, stacklevel=3)
        record["restored_epoch"] = None
        return
    run.model.load_state_dict(good["model"])
    run.optimizer.load_state_dict(good["optimizer"])
    if run.average is not None:
        run.average.load_state_dict(good["average"])
    record["restored_epoch"] = good["epoch"]


def optimizer_steps(opts: FitOptions, batches_per_epoch: int, method: Method) -> int:
    """The optimizer steps of the whole run: the length a schedule spans, set up and resumed alike."""
    return opts.epochs * batches_per_epoch * method.steps_per_batch


def setup(model: nn.Module, method: Method, opts: FitOptions, train_size: int, example: torch.Tensor) -> Run:
    """Device, process group, the speed levers (checked on ``example`` inputs [B, ...]), memory
    format, compile, DDP, optimizer, schedule and autocast: the :class:`Run` every later step
    works on."""
    device = model_device(model)
    checked_levers(model, example, opts)  # explicit settings win over the device's defaults
    distributed = init_from_env(device)
    rank, world = rank_and_world()
    if opts.batch_size < world:
        raise ValueError(f"batch_size={opts.batch_size} is smaller than the {world} processes")
    if opts.channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if opts.compile else model
    method.bind(net, train_size, seed=opts.seed)
    trained = net
    if distributed:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        trained = torch.compile(ddp) if opts.compile else ddp
    optimizer = _make_optimizer(model, opts.optimizer, opts.lr, opts.momentum, opts.weight_decay)
    batches_per_epoch = -(-train_size // opts.batch_size)
    scheduler = make_scheduler(optimizer, opts.schedule, optimizer_steps(opts, batches_per_epoch, method))
    dtype = AUTOCAST[opts.autocast]
    ctx = StepContext(
        autocast=(lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext,
        scaler=torch.amp.GradScaler(device.type) if dtype == torch.float16 else None,
    )
    fingerprint = run_fingerprint(model, method, train_size=train_size, batch_size=opts.batch_size, seed=opts.seed,
                                  meta=opts.meta, weight_average=opts.weight_average)
    average = WeightAverage(model, opts.weight_average) if opts.weight_average is not None else None
    return Run(model, net, trained, method, optimizer, scheduler, ctx, device, rank, world, batches_per_epoch,
               fingerprint, average=average)


def resume(run: Run, opts: FitOptions) -> None:
    """Load ``opts.checkpoint_path`` into ``run`` after checking that this run wrote it."""
    state = ckpt.load(opts.checkpoint_path, run.device)
    if opts.resume != "force":
        check_resumable(opts.checkpoint_path, state.get("run"), run.fingerprint)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    check_same_length(run.scheduler, optimizer_steps(opts, run.batches_per_epoch, run.method),
                      opts.checkpoint_path)
    if run.ctx.scaler is not None and state.get("scaler"):
        run.ctx.scaler.load_state_dict(state["scaler"])
    run.method.load_state_dict(state["method"])
    run.epoch, run.batch, run.step = state["epoch"], state["batch"], state["step"]
    run.history, run.sums = state["history"], EpochSums.from_state(state["partial"])
    run.best = state.get("best")
    if run.average is not None and state.get("average"):
        run.average.load_state_dict(state["average"])
    elif run.average is not None:  # resume="force" from a run without averaging: start the average here
        run.average = WeightAverage(run.model, run.average.tau)


def save_checkpoint(run: Run, opts: FitOptions, epoch: int, batch: int) -> None:
    """Write the run's state atomically (rank 0), positioned at ``(epoch, batch)``; every
    process first merges the method's per-process state."""
    run.method.synchronize()
    if opts.checkpoint_path is not None and run.rank == 0:
        ckpt.save_atomic({
            "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.ctx.scaler.state_dict() if run.ctx.scaler is not None else None,
            "method": run.method.state_dict(), "method_name": run.method.name, "epoch": epoch, "batch": batch,
            "step": run.step, "history": run.history, "partial": run.sums.state_dict(), "seed": opts.seed,
            "meta": opts.meta or {}, "run": run.fingerprint, "best": run.best,
            "average": run.average.state_dict() if run.average is not None else None,
            # which weights `eval --checkpoint` reads: the average, unless keep="best-robust" put the best in "model"
            "weights_for_eval": "average" if run.average is not None and not run.kept_best else "model",
        }, opts.checkpoint_path)
    barrier()


def train_epoch(run: Run, opts: FitOptions, train: IndexedData, epoch: int) -> None:
    """The batches of ``epoch`` from ``run.batch`` on (a resumed run starts mid-epoch), in the
    order given by ``(seed, epoch)``; each process takes its share of every global batch."""
    method = run.method
    if run.batch == 0:
        method.start_epoch(epoch, opts.epochs)
        run.sums = EpochSums()
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(mix_seed(opts.seed, epoch)))
    batches = order.split(opts.batch_size)
    bar = progress_bar(total=len(batches), initial=run.batch, desc=f"{method.name} epoch {epoch + 1}/{opts.epochs}",
                       enabled=opts.progress and run.rank == 0, leave=False)
    shares = [shard(batches[b], run.rank, run.world) for b in range(run.batch, len(batches))]
    for b, index, (xb, yb) in zip(range(run.batch, len(batches)), shares, train.batches(shares)):
        loss = train_batch(run, opts, epoch, b, index, xb, yb)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")
        if opts.callback is not None:
            opts.callback({"epoch": epoch, "batch": b, "step": run.step, "loss": loss})
        if opts.checkpoint_every and run.step % opts.checkpoint_every == 0 and b + 1 < len(batches):
            save_checkpoint(run, opts, epoch, b + 1)
    bar.close()
    run.batch = 0


def train_batch(run: Run, opts: FitOptions, epoch: int, b: int, index: torch.Tensor, xb: torch.Tensor,
                yb: torch.Tensor) -> float:
    """One step of the method on one batch; returns its loss (NaN / inf stops the run)."""
    tic = time.perf_counter()
    step_seed = mix_seed(opts.seed, run.step, run.rank)
    torch.manual_seed(step_seed)  # LWTA / PNI noise, dropout
    run.method.generator.manual_seed(mix_seed(step_seed, 1))
    run.method.set_progress(epoch + b / run.batches_per_epoch, opts.epochs)
    xb, yb = xb.to(run.device), yb.to(run.device)
    check_label_range(yb, num_classes(run, xb), f"train_data (batch {b})")
    augment = None
    if opts.augment:
        augment = CropFlip.draw(len(xb), generator=torch.Generator().manual_seed(mix_seed(step_seed, 2)))
        xb = augment(xb)
    targets = None
    if opts.augmentations:
        generator = torch.Generator().manual_seed(mix_seed(step_seed, 3))
        targets = F.one_hot(yb, num_classes(run, xb)).float()
        for augmentation in opts.augmentations:
            xb, yb, targets = augmentation(xb, yb, targets, generator)
    if opts.channels_last and xb.dim() == 4:
        xb = xb.contiguous(memory_format=torch.channels_last)
    run.model.train()
    scaler = run.ctx.scaler
    scale = scaler.get_scale() if scaler is not None else None
    ctx = dataclasses.replace(run.ctx, index=index, augment=augment, targets=targets)
    result = run.method.train_step(run.trained, run.optimizer, run.scheduler, xb, yb, ctx)
    if run.average is not None:
        run.average.update(run.model)
    loss = float(result.loss.detach())
    run.step += 1
    if math.isfinite(loss):
        correct = int((result.logits.detach().argmax(1) == yb).sum())
        run.sums.add(loss, correct, len(yb), time.perf_counter() - tic)
    elif scale is None or scaler.get_scale() >= scale:  # not a step the fp16 scaler skipped
        kept = f"; {opts.checkpoint_path!r} keeps the last good state" if opts.checkpoint_path else ""
        raise FloatingPointError(f"training loss is {loss} at step {run.step} (epoch {epoch + 1}, batch {b + 1}): "
                                 f"stopping{kept}")
    return loss


def check_labels(run: Run, opts: FitOptions, train: IndexedData, val: IndexedData | None) -> None:
    """Labels must be classes of the model: all of them up front for tensors (a Dataset's are
    checked batch by batch in :func:`train_batch`); and a model AutoAttack's fast version can
    attack, when it validates."""
    with dtype_hint(run.model, train.example, train.name):
        classes = num_classes(run, train.example.to(run.device))
    for data in (train, val):
        if data is not None and data.tensors is not None:
            check_label_range(data.tensors[1], classes, data.name)
    if val is not None and opts.val_attack == "autoattack-fast":  # before the first epoch, not after it
        from ..eval import check_version_classes

        try:
            check_version_classes("fast", run.method.space.norm, classes)
        except ValueError as exc:
            raise ValueError(f"val_attack='autoattack-fast' cannot validate this model: {exc}") from None


def num_classes(run: Run, x: torch.Tensor) -> int:
    """The model's number of outputs (one eval-mode forward of one sample, the first time)."""
    if run.classes is None:
        with frozen_model(run.model, "eval"), torch.no_grad():
            logits = run.method.forward(run.model, x[:1])
            check_logits_shape(logits, 1)
            run.classes = int(logits.shape[1])
    return run.classes


def end_epoch(run: Run, opts: FitOptions, val: IndexedData | None, epoch: int) -> dict:
    """The epoch's record: sums over processes, the method's figures, validation and the
    catastrophic-overfitting check (warned about); appended to the history."""
    sums = run.sums.over_ranks(run.device)
    record = {"epoch": epoch + 1, "step": run.step, "lr": run.optimizer.param_groups[0]["lr"],
              "loss": sums.loss / max(sums.seen, 1), "train_acc": sums.correct / max(sums.seen, 1),
              "train_seconds": sums.seconds / run.world}
    record.update(run.method.epoch_metrics())  # the figures this epoch trained with
    run.sums = EpochSums()
    if val is not None:
        scores = validate(run.evaluated, run.method, val, steps=opts.val_attack_steps, batch_size=opts.batch_size,
                          seed=mix_seed(opts.seed, epoch, 7), device=run.device)
        run.method.end_validation(scores["val_clean_acc"], scores["val_pgd_acc"])
        record.update(scores)
        if opts.val_attack == "autoattack-fast":
            record["val_fast_acc"] = validate_fast(run.evaluated, run.method, val, batch_size=opts.batch_size,
                                                   seed=mix_seed(opts.seed, epoch, 11))
    run.history.append(record)
    message = overfit_message(run.history, run.method.eps_warmup_epochs)
    if message is not None:
        record["overfit"] = True
        if run.rank == 0:
            warnings.warn(message + {"warn": "", "stop": "; stopping", "restore": "; restoring the last good "
                                     "epoch and stopping"}[opts.on_overfit], RuntimeWarning, stacklevel=3)
    return record
