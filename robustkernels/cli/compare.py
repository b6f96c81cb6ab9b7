"""``robustkernels compare``: several training methods, one model, one budget; AutoAttack
accuracy against training time, as a table and a figure."""

from __future__ import annotations

import json
import os

from .args import add_model_options, command, end_distributed, first_process, held_folder, integer, number
from .args import device as parse_device

DEFAULT_METHODS = "pgd-at,fgsm-rs,n-fgsm,free-at,atta,fat,n-fgsm+levers,atta+levers"
SUMMARY = "train several methods on the same model and data; AutoAttack accuracy against training time"


def add_compare(commands) -> None:
    p = command(commands, "compare", SUMMARY, run_compare)
    from ..data import DATASETS, USER_DATASETS
    from ..recipes.fastat import AA_VERSIONS, PROTOCOLS
    from ..train import LR_SCHEDULES
    from ..train.options import KEEP, VAL_ATTACKS

    p.add_argument("--dataset", choices=DATASETS + USER_DATASETS, default="cifar10",
                   help="training data (imagefolder / tensors: your own files, as for `train`)")
    p.add_argument("--data-dir", default="../shared/data/cifar-10-batches-py",
                   help="the data set's files (the MNIST IDX files, the CIFAR python batches, SVHN's .mat files, "
                        "your image folder or tensor files)")
    add_model_options(p, "wrn-10-1",
                      "cnn | cnn-bn | lenet5 | preact-resnet18 | wrn-DEPTH-WIDTH (preact-resnet18 on a GPU)")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated methods; NAME+levers trains that one with --auto-levers (default: "
                        f"{DEFAULT_METHODS}; with --protocol fastat every benchmark method, NAME+wa with averaging)")
    p.add_argument("--epochs", type=integer(), default=4,
                   help="epochs per method (free-at: epochs / replays, the same number of minibatch steps)")
    p.add_argument("--auto-levers", action="store_true",
                   help="train every method with the speed levers that pay off on this device")
    p.add_argument("--eps", type=number(fraction=True), default=None,
                   help="default: 0.1 digits, 0.3 mnist, 8/255 cifar10, cifar100 and svhn; your own data: required")
    p.add_argument("--eps-warmup-epochs", type=number(), default=0.0, help="eps ramp for every method")
    p.add_argument("--batch-size", type=integer(), default=128, help="training batch")
    p.add_argument("--lr", type=number(positive=True), default=0.1, help="peak learning rate (SGD, momentum 0.9)")
    p.add_argument("--schedule", default=None, choices=LR_SCHEDULES,
                   help="one schedule for every method (default cyclic: Wong et al.'s fast-AT schedule; "
                        "--protocol fastat: onecycle, fixed)")
    p.add_argument("--weight-average", type=number(positive=True, below=1.0), default=None,
                   help="EMA decay tau of the weights for every method, e.g. 0.9995 (default: none; --protocol "
                        "fastat: the tau of the +wa rows, default the benchmark's 0.9995)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="fastat: the FastAT Benchmark's recipe (onecycle SGD, label smoothing 0.4, weight averaging "
                        "0.9995, best epoch by validation on held-out training images) for its methods over --seeds, "
                        "with the benchmark's published figures and the rank correlation")
    p.add_argument("--seeds", default=None, help="--protocol fastat: comma-separated seeds (default 0,1,2)")
    p.add_argument("--timing", action="store_true",
                   help="--protocol fastat: instead of the runs, time each method (3 epochs, the median of the last "
                        "2) into --out/timing.json, from which the table then takes its training times: run it on a "
                        "quiet machine; the runs' accuracies do not depend on what else the machine does")
    p.add_argument("--aa-version", choices=AA_VERSIONS, default=None,
                   help="AutoAttack version that scores the models (default: auto; standard with --protocol)")
    p.add_argument("--no-augment", action="store_true", help="no random crop and flip")
    p.add_argument("--train-samples", type=integer(), default=None, help="use the first N training samples")
    p.add_argument("--val-samples", type=integer(), default=None,
                   help="samples watched each epoch: the last test samples (default 200), with --protocol the last "
                        "training samples, held out (default 1000, 500 for CIFAR)")
    p.add_argument("--eval-samples", type=integer(), default=None,
                   help="test samples AutoAttack runs on (default 200; with --protocol 1000, or all of a smaller "
                        "test set)")
    p.add_argument("--val-attack", choices=VAL_ATTACKS, default=None,
                   help="per-epoch validation: PGD (default), or also AutoAttack's fast version (val_fast_acc)")
    p.add_argument("--keep", choices=KEEP, default=None,
                   help="score the last epoch's weights (default), or those of the best validation robust accuracy "
                        "(robust-overfitting early stopping); the table gives the epoch kept; --protocol fastat: "
                        "best-robust, fixed")
    p.add_argument("--seed", type=integer(minimum=0), default=0, help="seed of every random choice")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument("--out", default="runs/compare", help="writes compare.md, compare.json and compare.png here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def contenders(spec: str, args, eps: float, normalization=None) -> list:
    from ..recipes.compare import Contender
    from ..train import make_method

    out = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        name, _, suffix = item.partition("+")
        if suffix not in ("", "levers"):
            raise ValueError(f"--methods: {item!r}: the only suffix is +levers")
        method = make_method(name, eps=eps, eps_warmup_epochs=args.eps_warmup_epochs, normalization=normalization)
        epochs = max(1, args.epochs // method.replays) if hasattr(method, "replays") else args.epochs
        out.append(Contender(item, method, epochs, auto_levers=args.auto_levers or suffix == "levers"))
    if not out:
        raise ValueError("--methods is empty")
    return out


def _print_row(row) -> None:
    if not first_process():
        return
    print(f"{row.name}: trained {row.epochs} epochs in {row.train_seconds:.0f} s; "
          f"clean {100 * row.clean_accuracy:.1f}%, AutoAttack {100 * row.robust_accuracy:.1f}% "
          f"({row.eval_seconds:.0f} s)", flush=True)


def run_compare(args) -> int:
    from ..train.distributed import init_from_env

    if args.timing and args.protocol != "fastat":
        raise ValueError("--timing times the methods of --protocol fastat: pass that too")
    if args.seeds is not None and args.protocol != "fastat":
        raise ValueError("--seeds: the seeds of --protocol fastat's runs; without it, --seed")
    init_from_env(parse_device(args.device))  # under torchrun: every process trains and scores each model together
    with held_folder(args.out):
        if args.protocol == "fastat":
            from .fastat import run_fastat

            return run_fastat(args)
        return _compare(args)


def _compare(args) -> int:

    from .. import machine
    from ..data import take
    from ..recipes.compare import autoattack_scorer, compare, plot, rows_as_dicts, to_markdown
    from .args import eps_for, load_data, parse_normalization
    from .modelspec import build_for, check_fits

    out = args.out
    device = parse_device(args.device)
    eps = eps_for(args)
    normalization = parse_normalization(args.normalization)
    entries = contenders(args.methods or DEFAULT_METHODS, args, eps, normalization)  # validates before loading data
    train, test = load_data(args)
    train = take(train, 0, args.train_samples)

    def make_model():
        return build_for(args, test, args.seed)[0].to(device)

    check_fits(make_model(), test, normalization)  # a bad --model fails here, before any training
    rows = compare(make_model, entries, train, test,
                   evaluate=autoattack_scorer(eps, samples=args.eval_samples or 200, seed=args.seed,
                                              normalization=normalization, version=args.aa_version or "auto"),
                   progress=not args.no_progress, on_row=_print_row, batch_size=args.batch_size, lr=args.lr,
                   optimizer="sgd", schedule=args.schedule or "cyclic",
                   augment=not args.no_augment and args.dataset in ("cifar10", "cifar100"),
                   val_data=take(test, -(args.val_samples or 200)), seed=args.seed, val_attack=args.val_attack or "pgd",
                   keep=args.keep or "last", weight_average=args.weight_average)
    reference = next((e.label for e in entries if e.label == "pgd-at"), None)
    title = (f"{args.model} on {args.dataset} ({len(train[1]) if isinstance(train, tuple) else len(train)} "
             f"training images), {args.epochs} epochs, AutoAttack on {min(args.eval_samples or 200, len(test))} test "
             "images")
    table = to_markdown(rows, reference)
    header = f"{title}\nmachine: {machine.describe()}, device {device}\n"
    end_distributed()
    if not first_process():  # torchrun: every process scored the same models; the first writes
        return 0
    print(header + "\n" + table)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "compare.md"), "w") as f:
        f.write(header + "\n" + table + "\n")
    with open(os.path.join(out, "compare.json"), "w") as f:
        json.dump({"title": title, "machine": machine.describe(), "device": str(device), "eps": eps,
                   "rows": rows_as_dicts(rows)}, f, indent=1)
    print(f"wrote {plot(rows, os.path.join(out, 'compare.png'), f'{args.model} on {args.dataset}')}")
    return 0
