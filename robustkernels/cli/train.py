"""``robustkernels train``: its options and the run (library logic lives in robustkernels.train)."""

from __future__ import annotations

import os
import sys

from ..data import DATASETS, USER_DATASETS
from .args import (
    add_model_options,
    command,
    end_distributed,
    eps_for,
    held_folder,
    integer,
    load_data,
    number,
    parse_normalization,
)
from .args import device as parse_device

# Short runs must give a useful model: the 1,348 digits need small batches and Adam; the file data
# sets take the AT literature's SGD at batch 128.
TRAIN_DEFAULTS = {"digits": dict(batch_size=32, optimizer="adam")}  # every other data set: SGD at batch 128
FILE_DEFAULTS = dict(batch_size=128, optimizer="sgd")
LR_DEFAULTS = {"sgd": 0.1, "adam": 3e-3}


def add_train(commands) -> None:
    from ..common import AUTOCAST
    from ..models.preact import ACTIVATIONS
    from ..train import LR_SCHEDULES, METHODS
    from ..train.options import ON_OVERFIT, OPTIMIZERS

    p = command(commands, "train", "train a model with a robust training method (torchrun for DDP)", run_train)
    add_model_options(p, "cnn", "cnn | cnn-bn | lenet5 | preact-resnet18 | wrn-DEPTH-WIDTH (e.g. wrn-34-1)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu", help="ReLU or Stochastic LWTA")
    p.add_argument("--pni", action="store_true", help="Parametric Noise Injection on every conv/linear layer")
    p.add_argument("--method", default="pgd-at",
                   help="training method: " + " | ".join(m.replace("_", "-") for m in METHODS))
    p.add_argument("--dataset", choices=DATASETS + USER_DATASETS, default="digits",
                   help="digits (bundled); mnist, cifar10, cifar100, svhn from their files in --data-dir; your own "
                        "imagefolder (--data-dir with train/ and val/ or test/, one subfolder per class) or tensors "
                        "(--data-dir with train.pt and test.pt, or .npz)")
    p.add_argument("--data-dir", help="the data set's files (the MNIST IDX files, the CIFAR python batches, SVHN's "
                   ".mat files, your image folder or tensor files)")
    p.add_argument("--download", action="store_true", help="fetch mnist or cifar10 into --data-dir first")
    p.add_argument("--epochs", type=integer(), default=10, help="passes over the training data")
    p.add_argument("--batch-size", type=integer(), default=None,
                   help="global batch (default: 32 on digits, else 128)")
    p.add_argument("--lr", type=number(positive=True), default=None,
                   help="peak learning rate (default: 0.1 for sgd, 3e-3 for adam)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help="default: adam on digits, else sgd (momentum 0.9)")
    p.add_argument("--schedule", choices=LR_SCHEDULES, default=None,
                   help="learning-rate schedule (default: the method's, else step: x0.1 at 50%%, x0.01 at 75%%)")
    p.add_argument("--weight-decay", type=number(), default=5e-4, help="L2 weight decay (sgd)")
    _method_arguments(p)
    p.add_argument("--on-overfit", choices=ON_OVERFIT, default="warn",
                   help="on catastrophic overfitting (validation PGD accuracy collapsing while FGSM accuracy "
                        "rises): warn, stop, or restore the last good epoch and stop")
    p.add_argument("--augment", action="store_true", help="random crop (padding 4) and horizontal flip")
    p.add_argument("--augmentations", default="",
                   help="comma-separated, with any method: label_smoothing[:0.1], gaussian_noise[:0.1], "
                        "mixup[:1.0], cutmix[:1.0]")
    p.add_argument("--autocast", choices=tuple(k for k in AUTOCAST if k), default=None,
                   help="mixed precision for the model")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--auto-levers", action="store_true",
                   help="the levers among bf16 autocast, channels_last and torch.compile that pay off on this device")
    _run_arguments(p)


def _run_arguments(p) -> None:
    """Where the run goes and what it keeps: device, seed, output folder, checkpoints, validation."""
    from ..train.options import KEEP, VAL_ATTACKS

    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available, per local rank)")
    p.add_argument("--seed", type=integer(minimum=0), default=0, help="seed of every random choice")
    p.add_argument("--out", default="runs/train", help="folder for checkpoint.pt and metrics.jsonl")
    p.add_argument("--checkpoint-every", type=integer(), default=None,
                   help="also checkpoint every N steps (default: at each epoch end only)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt if it exists")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, or --resume, such an --out is refused)")
    p.add_argument("--force-resume", action="store_true",
                   help="with --resume: load the checkpoint even if it was written by a different run")
    p.add_argument("--val-samples", type=integer(), default=1000,
                   help="test samples for the per-epoch clean and PGD validation")
    p.add_argument("--val-attack", choices=VAL_ATTACKS, default="pgd",
                   help="per-epoch validation: PGD, or also AutoAttack's fast version (val_fast_acc)")
    p.add_argument("--weight-average", type=number(positive=True, below=1.0), default=None,
                   help="keep an EMA of the weights with this decay tau, e.g. 0.9995 (validated, checkpointed and "
                        "evaluated in place of the last weights)")
    p.add_argument("--keep", choices=KEEP, default="last",
                   help="the checkpoint's final weights: the last epoch's, or those of the best validation robust "
                        "accuracy (robust-overfitting early stopping)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they are off when piped anyway)")


def _method_arguments(p) -> None:
    """The threat model and the training methods' own options."""
    from ..certify import BOUND_METHODS
    from ..eval.options import NORMS
    from ..train.methods.atta import LOSSES as ATTA_LOSSES

    p.add_argument("--eps", type=number(fraction=True), default=None,
                   help="threat radius, e.g. 8/255 (default: 0.1 digits, 0.3 mnist, 8/255 cifar10, cifar100 and svhn; "
                        "your own data: required)")
    p.add_argument("--alpha", type=number(fraction=True), default=None,
                   help="attack step size (default: 2.5 eps / steps)")
    p.add_argument("--steps", type=integer(), default=None,
                   help="attack steps per training batch (default: 1 for fgsm-rs, n-fgsm and atta, else 10)")
    p.add_argument("--norm", choices=NORMS, default="linf", help="threat model")
    p.add_argument("--beta", type=number(), default=6.0, help="TRADES weight of the robustness term")
    p.add_argument("--replays", type=integer(), default=4, help="free-AT minibatch replays m")
    p.add_argument("--sensitivity-weight", type=number(), default=1e-3,
                   help="lambda of the sensitivity method")
    p.add_argument("--kl-weight", type=number(), default=0.0, help="weight of the LWTA/IBP KL terms")
    p.add_argument("--eps-warmup-epochs", type=number(), default=0.0,
                   help="ramp eps linearly from 0 over this many epochs (any method)")
    p.add_argument("--tau", type=integer(minimum=0), default=None,
                   help="fat: steps after the first misclassification (default: the dynamic 0/1/2 schedule)")
    p.add_argument("--bound", choices=BOUND_METHODS, default="ibp",
                   help="ibp: the bounds trained on (crown-ibp: Zhang et al. 2020's beta schedule from 1 to 0)")
    p.add_argument("--atta-loss", choices=ATTA_LOSSES, default="ce", help="atta: the training objective")
    p.add_argument("--reset-every", type=integer(), default=10, help="atta: epochs between buffer resets")


def _method_kwargs(args, eps: float) -> dict:
    kwargs = dict(eps=eps, alpha=args.alpha, steps=args.steps, norm=args.norm, kl_weight=args.kl_weight,
                  eps_warmup_epochs=args.eps_warmup_epochs)
    name = args.method.replace("-", "_")
    extra = {"trades": {"beta": args.beta}, "free_at": {"replays": args.replays},
             "sensitivity": {"weight": args.sensitivity_weight}, "fat": {"tau": args.tau}, "ibp": {"bound": args.bound},
             "atta": {"loss": args.atta_loss, "reset_every": args.reset_every, "beta": args.beta}}
    if args.steps is None:
        del kwargs["steps"]  # the method's default: 10 for PGD-based methods, 1 for single-step ones
    return {**kwargs, **extra.get(name, {})}


RUN_FILES = ("checkpoint.pt", "metrics.jsonl")


def run_train(args) -> int:
    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: give one")
    found = [name for name in RUN_FILES if _holds(os.path.join(args.out, name))]
    if found and not (args.resume or args.overwrite):
        raise ValueError(f"--out {args.out!r} already holds a run ({', '.join(found)}): pass --resume to continue "
                         f"it, --overwrite to replace it, or choose a fresh --out")
    with held_folder(args.out):
        if args.overwrite:  # both files go together: a replacing run that fails leaves no half of the old one
            for name in RUN_FILES:
                if os.path.exists(os.path.join(args.out, name)):
                    os.remove(os.path.join(args.out, name))
        return _train(args)


def _holds(path: str) -> bool:
    """A run file with something in it (a run that failed before its first epoch leaves an empty log)."""
    return os.path.isfile(path) and os.path.getsize(path) > 0


def _train(args) -> int:
    import torch

    from ..common import rank_and_world
    from ..data import take
    from ..train import fit, make_method
    from ..train.augment import make_augmentation
    from ..train.checkpoint import check_path
    from ..train.trainer import json_line
    from .modelspec import build_for, check_fits

    out = args.out
    if args.force_resume and not args.resume:
        raise ValueError("--force-resume needs --resume")
    checkpoint_path = check_path(os.path.join(out, "checkpoint.pt"), "--out's checkpoint.pt")
    device = parse_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    defaults = TRAIN_DEFAULTS.get(args.dataset, FILE_DEFAULTS)
    batch_size = args.batch_size or defaults["batch_size"]
    optimizer = args.optimizer or defaults["optimizer"]
    eps = eps_for(args)
    normalization = parse_normalization(args.normalization)
    method = make_method(args.method, **_method_kwargs(args, eps), normalization=normalization)  # checked first
    augmentations = [make_augmentation(a) for a in args.augmentations.split(",") if a]
    train, test = load_data(args)
    model, meta = build_for(args, train, args.seed)
    check_fits(model, test, normalization)
    meta.update(dataset=args.dataset, eps=eps, norm=args.norm, method=method.name,
                normalization=None if normalization is None else [list(v) for v in normalization])
    model = model.to(device)
    os.makedirs(out, exist_ok=True)
    lr = args.lr if args.lr is not None else LR_DEFAULTS[optimizer]
    history = fit(model, method, take(train, 0), epochs=args.epochs, batch_size=batch_size, lr=lr,
                  optimizer=optimizer, weight_decay=args.weight_decay, schedule=args.schedule,
                  augment=args.augment, augmentations=augmentations,
                  val_data=take(test, 0, args.val_samples),
                  autocast=args.autocast, channels_last=args.channels_last, compile=args.compile,
                  auto_levers=args.auto_levers,
                  on_overfit=args.on_overfit, seed=args.seed, val_attack=args.val_attack, keep=args.keep,
                  log_path=os.path.join(out, "metrics.jsonl"), checkpoint_path=checkpoint_path,
                  checkpoint_every=args.checkpoint_every, resume="force" if args.force_resume else args.resume,
                  weight_average=args.weight_average,
                  progress=not args.no_progress, meta=meta, on_epoch=lambda r: print(json_line(r), end="", flush=True))
    if rank_and_world()[0] == 0:
        print(f"wrote {checkpoint_path} and {os.path.join(out, 'metrics.jsonl')} ({len(history)} epochs)",
              file=sys.stderr)
    end_distributed()
    return 0
