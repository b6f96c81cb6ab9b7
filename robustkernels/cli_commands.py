"""``robustkernels demo | train | eval``: argument parsing and wiring to the library."""

from __future__ import annotations

import argparse
import os

from .cli_args import HelpFormatter, eot_iter, held_folder, integer, number, output_folder
from .cli_args import device as parse_device

DATASET_SHAPES = {"digits": (1, 8), "mnist": (1, 28), "cifar10": (3, 32)}  # channels, side
DEFAULT_EPS = {"digits": 0.1, "mnist": 0.3, "cifar10": 8 / 255}
# Short runs must give a useful model: the 1,348 digits need small batches and Adam; the file data
# sets take the AT literature's SGD at batch 128.
TRAIN_DEFAULTS = {"digits": dict(batch_size=32, optimizer="adam"), "mnist": dict(batch_size=128, optimizer="sgd"),
                  "cifar10": dict(batch_size=128, optimizer="sgd")}
LR_DEFAULTS = {"sgd": 0.1, "adam": 3e-3}
MODEL_META = ("model", "activation", "pni", "in_channels", "num_classes", "image_size", "dataset", "eps")


def _command(commands, name: str, summary: str, run) -> argparse.ArgumentParser:
    p = commands.add_parser(name, help=summary, description=summary, formatter_class=HelpFormatter)
    p.set_defaults(run=run)
    return p


def _load(args):
    from .data import download, load_dataset

    if getattr(args, "download", False) and args.dataset != "digits":
        download(args.dataset, args.data_dir)
    return load_dataset(args.dataset, args.data_dir, seed=args.seed)


def add_train(commands) -> None:
    from .train import LR_SCHEDULES, METHODS

    p = _command(commands, "train", "train a model with a robust training method (torchrun for DDP)", run_train)
    p.add_argument("--model", default="cnn", help="cnn | lenet5 | wrn-DEPTH-WIDTH (e.g. wrn-34-1)")
    p.add_argument("--activation", choices=("relu", "lwta"), default="relu", help="ReLU or Stochastic LWTA")
    p.add_argument("--pni", action="store_true", help="Parametric Noise Injection on every conv/linear layer")
    p.add_argument("--method", default="pgd-at",
                   help="training method: " + " | ".join(m.replace("_", "-") for m in METHODS))
    p.add_argument("--dataset", choices=tuple(DATASET_SHAPES), default="digits",
                   help="digits (bundled), or mnist / cifar10 read from --data-dir")
    p.add_argument("--data-dir", help="folder with the CIFAR-10 python batches or the MNIST IDX files")
    p.add_argument("--download", action="store_true", help="fetch the dataset into --data-dir first")
    p.add_argument("--epochs", type=integer(), default=10, help="passes over the training data")
    p.add_argument("--batch-size", type=integer(), default=None,
                   help="global batch (default: 32 on digits, 128 on mnist and cifar10)")
    p.add_argument("--lr", type=number(positive=True), default=None,
                   help="peak learning rate (default: 0.1 for sgd, 3e-3 for adam)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default=None,
                   help="default: adam on digits, sgd (momentum 0.9) on mnist and cifar10")
    p.add_argument("--schedule", choices=LR_SCHEDULES, default=None,
                   help="learning-rate schedule (default: the method's, else step: x0.1 at 50%%, x0.01 at 75%%)")
    p.add_argument("--weight-decay", type=number(), default=5e-4, help="L2 weight decay (sgd)")
    p.add_argument("--eps", type=number(fraction=True), default=None,
                   help="threat radius, e.g. 8/255 (default: 0.1 digits, 0.3 mnist, 8/255 cifar10)")
    p.add_argument("--alpha", type=number(fraction=True), default=None,
                   help="attack step size (default: 2.5 eps / steps)")
    p.add_argument("--steps", type=integer(), default=None,
                   help="attack steps per training batch (default: 1 for fgsm-rs, n-fgsm and atta, else 10)")
    p.add_argument("--norm", choices=("linf", "l2"), default="linf", help="threat model")
    p.add_argument("--beta", type=number(), default=6.0, help="TRADES weight of the robustness term")
    p.add_argument("--replays", type=integer(), default=4, help="free-AT minibatch replays m")
    p.add_argument("--sensitivity-weight", type=number(), default=1e-3,
                   help="lambda of the sensitivity method")
    p.add_argument("--kl-weight", type=number(), default=0.0, help="weight of the LWTA/IBP KL terms")
    p.add_argument("--eps-warmup-epochs", type=number(), default=0.0,
                   help="ramp eps linearly from 0 over this many epochs (any method)")
    p.add_argument("--tau", type=integer(minimum=0), default=None,
                   help="fat: steps after the first misclassification (default: the dynamic 0/1/2 schedule)")
    p.add_argument("--bound", choices=("ibp", "crown-ibp"), default="ibp",
                   help="ibp: the bounds trained on (crown-ibp: Zhang et al. 2020's beta schedule from 1 to 0)")
    p.add_argument("--atta-loss", choices=("ce", "trades"), default="ce", help="atta: the training objective")
    p.add_argument("--reset-every", type=integer(), default=10, help="atta: epochs between buffer resets")
    p.add_argument("--on-overfit", choices=("warn", "stop", "restore"), default="warn",
                   help="on catastrophic overfitting (validation PGD accuracy collapsing while FGSM accuracy "
                        "rises): warn, stop, or restore the last good epoch and stop")
    p.add_argument("--augment", action="store_true", help="random crop (padding 4) and horizontal flip")
    p.add_argument("--augmentations", default="",
                   help="comma-separated, with any method: label_smoothing[:0.1], gaussian_noise[:0.1], "
                        "mixup[:1.0], cutmix[:1.0]")
    p.add_argument("--autocast", choices=("bf16", "fp16"), default=None, help="mixed precision for the model")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--fast", action="store_true",
                   help="the levers among bf16 autocast, channels_last and torch.compile that pay off on this device")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available, per local rank)")
    p.add_argument("--seed", type=integer(minimum=0), default=0, help="seed of every random choice")
    p.add_argument("--out", default="runs/train", help="folder for checkpoint.pt and metrics.jsonl")
    p.add_argument("--checkpoint-every", type=integer(), default=None,
                   help="also checkpoint every N steps (default: at each epoch end only)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt if it exists")
    p.add_argument("--force-resume", action="store_true",
                   help="with --resume: load the checkpoint even if it was written by a different run")
    p.add_argument("--val-samples", type=integer(), default=1000,
                   help="test samples for the per-epoch clean and PGD validation")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they are off when piped anyway)")


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


def run_train(args) -> int:
    with held_folder(output_folder(args.out)):
        return _train(args)


def _train(args) -> int:
    import torch

    from .models import build_model
    from .train import fit, make_method
    from .train.augment import make_augmentation
    from .train.checkpoint import check_path
    from .train.distributed import rank_and_world
    from .train.trainer import json_line

    out = args.out
    if args.force_resume and not args.resume:
        raise ValueError("--force-resume needs --resume")
    checkpoint_path = check_path(os.path.join(out, "checkpoint.pt"), "--out's checkpoint.pt")
    device = parse_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    defaults = TRAIN_DEFAULTS[args.dataset]
    batch_size = args.batch_size or defaults["batch_size"]
    optimizer = args.optimizer or defaults["optimizer"]
    eps = DEFAULT_EPS[args.dataset] if args.eps is None else args.eps
    method = make_method(args.method, **_method_kwargs(args, eps))  # validates before loading data
    augmentations = [make_augmentation(a) for a in args.augmentations.split(",") if a]
    (x, y), (x_test, y_test) = _load(args)
    channels, side = DATASET_SHAPES[args.dataset]
    meta = dict(model=args.model, activation=args.activation, pni=args.pni, in_channels=channels, image_size=side,
                num_classes=10, dataset=args.dataset, eps=eps, norm=args.norm, method=method.name)
    torch.manual_seed(args.seed)
    model = build_model(args.model, activation=args.activation, pni=args.pni, in_channels=channels,
                        num_classes=10, image_size=side).to(device)
    os.makedirs(out, exist_ok=True)
    lr = args.lr if args.lr is not None else LR_DEFAULTS[optimizer]
    history = fit(model, method, (x, y), epochs=args.epochs, batch_size=batch_size, lr=lr,
                  optimizer=optimizer, weight_decay=args.weight_decay, schedule=args.schedule,
                  augment=args.augment, augmentations=augmentations,
                  val_data=(x_test[:args.val_samples], y_test[:args.val_samples]),
                  autocast=args.autocast, channels_last=args.channels_last, compile=args.compile, fast=args.fast,
                  on_overfit=args.on_overfit, seed=args.seed,
                  log_path=os.path.join(out, "metrics.jsonl"), checkpoint_path=checkpoint_path,
                  checkpoint_every=args.checkpoint_every, resume="force" if args.force_resume else args.resume,
                  progress=not args.no_progress, meta=meta)
    if rank_and_world()[0] == 0:
        for record in history:
            print(json_line(record), end="")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # no process tears its connections down while a peer may still use them
        torch.distributed.destroy_process_group()
    return 0


def add_eval(commands) -> None:
    from .eval import ATTACKS

    p = _command(commands, "eval", "robustness report of a checkpoint written by `robustkernels train`", run_eval)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by `robustkernels train`")
    p.add_argument("--dataset", choices=tuple(DATASET_SHAPES), default=None, help="default: the training dataset")
    p.add_argument("--data-dir", help="folder with the CIFAR-10 python batches or the MNIST IDX files")
    p.add_argument("--eps", type=number(fraction=True), default=None, help="default: the training eps")
    p.add_argument("--norm", choices=("linf", "l2"), default=None, help="default: the training norm")
    p.add_argument("--attacks", default="fgsm,pgd,cw,apgd-ce,apgd-dlr", help="comma-separated: " + ",".join(ATTACKS))
    p.add_argument("--samples", type=integer(), default=None,
                   help="evaluate the first N test samples (default: all)")
    p.add_argument("--suite", choices=("default", "autoattack"), default="default",
                   help="autoattack: also run AutoAttack (the field's standard number) with its log")
    p.add_argument("--version", choices=("auto", "standard", "plus", "rand"), default="auto",
                   help="AutoAttack version (auto: rand for a stochastic model, else standard)")
    p.add_argument("--autocast", choices=("bf16", "fp16"), default=None,
                   help="run the model in this precision inside AutoAttack's attacks (verdicts in fp32)")
    p.add_argument("--eot-iter", type=eot_iter, default="auto",
                   help="gradient averaging passes per step (auto: 20 for a stochastic model, else 1)")
    p.add_argument("--check-samples", type=integer(), default=200,
                   help="samples for the gradient-masking checks and the eps curves")
    p.add_argument("--no-checks", action="store_true", help="skip the gradient-masking checks")
    p.add_argument("--corruptions", default="",
                   help="all, or comma-separated natural corruptions at the 5 CIFAR-10-C severities "
                        "(gaussian_noise,shot_noise,impulse_noise,defocus_blur,motion_blur,contrast,brightness,"
                        "jpeg_compression,pixelate)")
    p.add_argument("--surrogate", default=None,
                   help="checkpoint of another model: its PGD examples are tried on this one (transfer check)")
    p.add_argument("--certify", choices=("ibp", "crown-ibp"), default=None,
                   help="also report the certified accuracy from these bounds (deterministic models, linf)")
    p.add_argument("--batch-size", type=integer(), default=256, help="samples per attacked batch")
    p.add_argument("--seed", type=integer(minimum=0), default=0, help="seed of the attacks' random starts")
    p.add_argument("--out", default=None, help="write report.md, report.json and the plots here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they are off when piped anyway)")


def _model_from_checkpoint(path: str):
    """(model in eval mode, meta) rebuilt from a checkpoint written by `robustkernels train`."""
    from .models import build_model
    from .train.checkpoint import load

    state = load(path)
    meta = state.get("meta") or {}
    missing = [k for k in MODEL_META if k not in meta] + ([] if "model" in state else ["the weights"])
    if missing:
        raise ValueError(f"checkpoint {path!r} lacks {', '.join(missing)} (not written by `robustkernels train`)")
    model = build_model(meta["model"], activation=meta["activation"], pni=meta["pni"],
                        in_channels=meta["in_channels"], num_classes=meta["num_classes"], image_size=meta["image_size"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path!r}: the weights do not fit the model it describes "
                         f"({str(exc).splitlines()[0]})") from None
    return model.eval(), meta


def run_eval(args) -> int:
    with held_folder(output_folder(args.out)):
        return _eval(args)


def _eval(args) -> int:
    import torch

    from .eval import evaluate
    from .eval.corruptions import CORRUPTIONS

    corruptions = "all" if args.corruptions == "all" else [c for c in args.corruptions.split(",") if c]
    unknown = [c for c in ([] if corruptions == "all" else corruptions) if c not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"--corruptions: {', '.join(unknown)} not among all,{','.join(CORRUPTIONS)}")
    model, meta = _model_from_checkpoint(args.checkpoint)
    surrogate = _model_from_checkpoint(args.surrogate)[0] if args.surrogate else None
    args.dataset = args.dataset or meta["dataset"]
    _, (x, y) = _load(args)
    expected = [meta["in_channels"], meta["image_size"], meta["image_size"]]
    if list(x.shape[1:]) != expected:
        raise ValueError(f"--dataset {args.dataset}: images are {'x'.join(map(str, x.shape[1:]))} but the checkpoint's "
                         f"model takes {'x'.join(map(str, expected))} (it was trained on {meta['dataset']})")
    if args.samples is not None:
        x, y = x[:args.samples], y[:args.samples]
    report = evaluate(model, (x, y), eps=meta["eps"] if args.eps is None else args.eps,
                      norm=args.norm or meta.get("norm", "linf"), attacks=[a for a in args.attacks.split(",") if a],
                      eot_iter=args.eot_iter, batch_size=args.batch_size, checks=not args.no_checks,
                      check_samples=args.check_samples, generator=torch.Generator().manual_seed(args.seed),
                      progress=not args.no_progress, suite=args.suite, version=args.version,
                      autocast=args.autocast, surrogate=surrogate, corruptions=corruptions,
                      certify=args.certify, title=f"{meta['model']} ({meta['activation']}"
                      f"{', PNI' if meta['pni'] else ''}) trained with {meta.get('method', '?')} on {meta['dataset']}")
    print(report.to_markdown())
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        report.to_json(os.path.join(args.out, "report.json"))
        with open(os.path.join(args.out, "report.md"), "w") as f:
            f.write(report.to_markdown() + "\n")
        for path in report.plot(args.out):
            print(f"wrote {path}")
    return 0


def add_demo(commands) -> None:
    p = _command(commands, "demo", "train standard / PGD-AT / LWTA / PNI models on digits; robustness table",
                 run_demo)
    p.add_argument("--dataset", choices=("digits", "cifar10"), default="digits",
                   help="cifar10: the seed report's eight rows on the CIFAR-10 files of --data-dir (about 30 min)")
    p.add_argument("--data-dir", default="../shared/data/cifar-10-batches-py", help="for --dataset cifar10")
    p.add_argument("--epochs", type=integer(), default=None, help="training epochs per model (15 digits, 6 cifar10)")
    p.add_argument("--seed", type=integer(minimum=0), default=0, help="seed of every random choice")
    p.add_argument("--check-samples", type=integer(), default=100,
                   help="samples for the gradient-masking checks")
    p.add_argument("--out", default=None, help="also write each model's report (md, json, plots) here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they are off when piped anyway)")


def run_demo(args) -> int:
    from .demo import run

    if args.dataset == "cifar10":
        from .seed_report import run as seed_report

        print(seed_report(args.data_dir, epochs=args.epochs or 6, seed=args.seed, progress=not args.no_progress))
        return 0
    args.epochs = args.epochs or 15
    print(run(epochs=args.epochs, seed=args.seed, check_samples=args.check_samples, out=args.out,
              progress=not args.no_progress))
    return 0
