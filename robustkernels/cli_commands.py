"""``robustkernels demo | train | eval``: argument parsing and wiring to the library."""

from __future__ import annotations

import argparse
import json
import os
from fractions import Fraction

DATASET_SHAPES = {"digits": (1, 8), "mnist": (1, 28), "cifar10": (3, 32)}  # channels, side
DEFAULT_EPS = {"digits": 0.1, "mnist": 0.3, "cifar10": 8 / 255}


def parse_eps(text: str) -> float:
    """``"8/255"`` or ``"0.03"`` -> float (>= 0)."""
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"eps must be a number or a fraction like 8/255, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"eps must be >= 0, got {text}")
    return value


def _load(args):
    from .data import download, load_dataset

    if getattr(args, "download", False) and args.dataset != "digits":
        download(args.dataset, args.data_dir)
    return load_dataset(args.dataset, args.data_dir, seed=args.seed)


def add_train(commands) -> None:
    from .train import LR_SCHEDULES, METHODS

    p = commands.add_parser("train", help="train a model with a robust training method (torchrun for DDP)")
    p.add_argument("--model", default="cnn", help="cnn | lenet5 | wrn-DEPTH-WIDTH (e.g. wrn-34-1)")
    p.add_argument("--activation", choices=("relu", "lwta"), default="relu")
    p.add_argument("--pni", action="store_true", help="Parametric Noise Injection on every conv/linear layer")
    p.add_argument("--method", default="pgd-at", help=" | ".join(m.replace("_", "-") for m in METHODS))
    p.add_argument("--dataset", choices=tuple(DATASET_SHAPES), default="digits")
    p.add_argument("--data-dir", help="folder with the CIFAR-10 python batches or the MNIST IDX files")
    p.add_argument("--download", action="store_true", help="fetch the dataset into --data-dir first")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.1 sgd, 3e-3 adam)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--schedule", choices=LR_SCHEDULES, default=None)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--eps", type=parse_eps, default=None, help="threat radius, e.g. 8/255 (default per dataset)")
    p.add_argument("--alpha", type=parse_eps, default=None, help="attack step (default 2.5 eps / steps)")
    p.add_argument("--steps", type=int, default=10, help="attack steps")
    p.add_argument("--norm", choices=("linf", "l2"), default="linf")
    p.add_argument("--beta", type=float, default=6.0, help="TRADES beta")
    p.add_argument("--replays", type=int, default=4, help="free-AT minibatch replays m")
    p.add_argument("--sensitivity-weight", type=float, default=1e-3, help="lambda of the sensitivity method")
    p.add_argument("--kl-weight", type=float, default=0.0, help="weight of LWTA/IBP KL terms (ELBO)")
    p.add_argument("--augment", action="store_true", help="random crop + flip (CIFAR)")
    p.add_argument("--autocast", choices=("bf16", "fp16"), default=None)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available, per local rank)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/train", help="folder for checkpoint.pt and metrics.jsonl")
    p.add_argument("--checkpoint-every", type=int, default=None, help="also checkpoint every N steps")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--val-samples", type=int, default=1000, help="test samples for the per-epoch validation")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run_train)


def _method_kwargs(args, eps: float) -> dict:
    kwargs = dict(eps=eps, alpha=args.alpha, steps=args.steps, norm=args.norm, kl_weight=args.kl_weight)
    name = args.method.replace("-", "_")
    extra = {"trades": {"beta": args.beta}, "free_at": {"replays": args.replays},
             "sensitivity": {"weight": args.sensitivity_weight}}
    return {**kwargs, **extra.get(name, {})}


def run_train(args) -> int:
    import torch

    from .models import build_model
    from .train import fit, make_method
    from .train.distributed import rank_and_world

    if args.epochs < 1 or args.batch_size < 1:
        raise SystemExit("robustkernels train: --epochs and --batch-size must be >= 1")
    eps = DEFAULT_EPS[args.dataset] if args.eps is None else args.eps
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(args.device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    method = make_method(args.method, **_method_kwargs(args, eps))  # validates before loading data
    (x, y), (x_test, y_test) = _load(args)
    channels, side = DATASET_SHAPES[args.dataset]
    meta = dict(model=args.model, activation=args.activation, pni=args.pni, in_channels=channels, image_size=side,
                num_classes=10, dataset=args.dataset, eps=eps, norm=args.norm, method=method.name)
    torch.manual_seed(args.seed)
    model = build_model(args.model, activation=args.activation, pni=args.pni, in_channels=channels,
                        num_classes=10, image_size=side).to(device)
    os.makedirs(args.out, exist_ok=True)
    lr = args.lr if args.lr is not None else (0.1 if args.optimizer == "sgd" else 3e-3)
    history = fit(model, method, (x, y), epochs=args.epochs, batch_size=args.batch_size, lr=lr,
                  optimizer=args.optimizer, weight_decay=args.weight_decay, schedule=args.schedule,
                  augment=args.augment, val_data=(x_test[:args.val_samples], y_test[:args.val_samples]),
                  autocast=args.autocast, channels_last=args.channels_last, compile=args.compile, seed=args.seed,
                  log_path=os.path.join(args.out, "metrics.jsonl"),
                  checkpoint_path=os.path.join(args.out, "checkpoint.pt"), checkpoint_every=args.checkpoint_every,
                  resume=args.resume, progress=not args.no_progress, meta=meta)
    if rank_and_world()[0] == 0:
        for record in history:
            print(json.dumps(record))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


def add_eval(commands) -> None:
    from .eval import ATTACKS

    p = commands.add_parser("eval", help="robustness report of a checkpoint written by `robustkernels train`")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", choices=tuple(DATASET_SHAPES), default=None, help="default: the training dataset")
    p.add_argument("--data-dir")
    p.add_argument("--eps", type=parse_eps, default=None, help="default: the training eps")
    p.add_argument("--norm", choices=("linf", "l2"), default=None)
    p.add_argument("--attacks", default="fgsm,pgd,cw,apgd-ce,apgd-dlr", help=",".join(ATTACKS))
    p.add_argument("--samples", type=int, default=None, help="evaluate the first N test samples")
    p.add_argument("--suite", choices=("default", "autoattack"), default="default",
                   help="autoattack: also run AutoAttack (the field's standard number) with its log")
    p.add_argument("--version", choices=("auto", "standard", "plus", "rand"), default="auto",
                   help="AutoAttack version (auto: rand for a stochastic model, else standard)")
    p.add_argument("--autocast", choices=("bf16", "fp16"), default=None,
                   help="run the model in this precision inside AutoAttack's attacks (verdicts in fp32)")
    p.add_argument("--eot-iter", default="auto")
    p.add_argument("--check-samples", type=int, default=200)
    p.add_argument("--no-checks", action="store_true")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write report.md, report.json and the plots here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run_eval)


def run_eval(args) -> int:
    import torch

    from .eval import evaluate
    from .models import build_model
    from .train.checkpoint import load

    state = load(args.checkpoint)
    meta = state.get("meta") or {}
    if "model" not in meta:
        raise SystemExit(f"robustkernels eval: {args.checkpoint} has no model description (not written by "
                         "`robustkernels train`)")
    args.dataset = args.dataset or meta["dataset"]
    model = build_model(meta["model"], activation=meta["activation"], pni=meta["pni"],
                        in_channels=meta["in_channels"], num_classes=meta["num_classes"], image_size=meta["image_size"])
    model.load_state_dict(state["model"])
    model.eval()
    _, (x, y) = _load(args)
    if args.samples is not None:
        x, y = x[:args.samples], y[:args.samples]
    eot = args.eot_iter if args.eot_iter == "auto" else int(args.eot_iter)
    report = evaluate(model, (x, y), eps=meta["eps"] if args.eps is None else args.eps,
                      norm=args.norm or meta.get("norm", "linf"), attacks=[a for a in args.attacks.split(",") if a],
                      eot_iter=eot, batch_size=args.batch_size, checks=not args.no_checks,
                      check_samples=args.check_samples, generator=torch.Generator().manual_seed(args.seed),
                      progress=not args.no_progress, suite=args.suite, version=args.version,
                      autocast=args.autocast, title=f"{meta['model']} ({meta['activation']}"
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
    p = commands.add_parser("demo", help="train standard / PGD-AT / LWTA / PNI models on digits; robustness table")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-samples", type=int, default=100, help="samples for the gradient-masking checks")
    p.add_argument("--out", default=None, help="also write each model's report (md, json, plots) here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run_demo)


def run_demo(args) -> int:
    from .demo import run

    print(run(epochs=args.epochs, seed=args.seed, check_samples=args.check_samples, out=args.out,
              progress=not args.no_progress))
    return 0
