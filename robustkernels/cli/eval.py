"""``robustkernels eval``: its options and the run (library logic lives in robustkernels.eval)."""

from __future__ import annotations

import os

from ..data import DATASETS, USER_DATASETS
from .args import (
    add_model_options,
    command,
    end_distributed,
    eot_iter,
    eps_for,
    first_process,
    held_folder,
    integer,
    load_data,
    model_args,
    number,
    parse_normalization,
)
from .modelspec import check_fits, is_import_path


def add_eval(commands) -> None:
    from ..certify import BOUND_METHODS
    from ..eval import ATTACKS
    from ..eval.options import NORMS

    p = command(commands, "eval", "robustness report of a checkpoint written by `robustkernels train`, or of "
                "any model from an import path", run_eval)
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint.pt written by `robustkernels train` (of your own model: with the same --model)")
    add_model_options(p, None, "instead of --checkpoint, with --weights and --dataset: a built-in name (cnn, "
                                "cnn-bn, lenet5, preact-resnet18, wrn-D-W)")
    p.add_argument("--weights", default=None,
                   help="--model: a state_dict file (plain, or under 'state_dict'/'model'; DDP prefixes stripped), "
                        "loaded with weights_only")
    p.add_argument("--dataset", choices=DATASETS + USER_DATASETS, default=None,
                   help="default: the training dataset; imagefolder (--data-dir with one subfolder per class, or "
                        "its val/ or test/) or tensors (--data-dir a .pt of {'x', 'y'} or .npz, or a folder's "
                        "test.pt) for your own test images")
    p.add_argument("--data-dir", help="the data set's files: the MNIST IDX files, the CIFAR-10 / CIFAR-100 python "
                   "batches, SVHN's .mat files, your image folder or tensor file")
    p.add_argument("--eps", type=number(fraction=True), default=None, help="default: the training eps")
    p.add_argument("--norm", choices=NORMS, default=None, help="default: the training norm")
    p.add_argument("--attacks", default="fgsm,pgd,cw,apgd-ce,apgd-dlr", help="comma-separated: " + ",".join(ATTACKS))
    p.add_argument("--samples", type=integer(), default=None,
                   help="evaluate the first N test samples (default: all)")
    _add_autoattack_options(p)
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
    p.add_argument("--certify", choices=BOUND_METHODS, default=None,
                   help="also report the certified accuracy from these bounds (deterministic models, linf)")
    p.add_argument("--batch-size", type=integer(), default=256, help="samples per attacked batch")
    p.add_argument("--seed", type=integer(minimum=0), default=0, help="seed of the attacks' random starts")
    p.add_argument("--out", default=None, help="write report.md, report.json and the plots here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they are off when piped anyway)")


def _add_autoattack_options(p) -> None:
    """The AutoAttack part's options, its state files and the shards."""
    from ..common import AUTOCAST
    from ..eval import VERSIONS
    from ..eval.options import SUITES

    p.add_argument("--suite", choices=SUITES, default="default",
                   help="autoattack: also run AutoAttack (the field's standard number) with its log")
    p.add_argument("--version", choices=("auto", *VERSIONS), default="auto",
                   help="AutoAttack version (auto: rand for a stochastic model, else standard; custom: --aa-attacks; "
                        "fast: ours, not AutoAttack, with its measured gap in the report)")
    p.add_argument("--aa-attacks", default=None,
                   help="--version custom: comma-separated among apgd-ce,apgd-dlr,apgd-t,fab,fab-t,square")
    p.add_argument("--resume", action="store_true",
                   help="--suite autoattack with --out: continue a killed run from --out/autoattack_state.json; "
                        "with --shard: continue the killed shard from its state file")
    p.add_argument("--shard", type=shard_arg, default=None, metavar="K/N",
                   help="evaluate shard K of N (from 0): every N-th batch from K, with --out (its state file "
                        "eval_state.json goes there); `robustkernels merge` makes the whole report from the N "
                        "folders. Give every shard the same --seed, --batch-size and settings (default: no shards)")
    p.add_argument("--individual", action="store_true",
                   help="AutoAttack: every attack on every point (each attack's robust accuracy), not the cascade")
    p.add_argument("--autocast", choices=("auto", "fp32", *(k for k in AUTOCAST if k)), default="auto",
                   help="the model's precision inside AutoAttack's gradient attacks (verdicts in fp32); auto: bf16 "
                        "for --version fast where a timed pass on the first batch is faster, else fp32")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                   help="attack a channels_last copy of the model (auto: where a timed pass on the first batch is "
                        "faster)")
    p.add_argument("--compile", action="store_true", help="attack a torch.compile copy of the model")


def shard_arg(text: str) -> tuple[int, int]:
    """``K/N`` -> (K, N) with 0 <= K < N."""
    import argparse

    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
        raise argparse.ArgumentTypeError(f"expected K/N with 0 <= K < N (e.g. 0/4), got {text!r}")
    return int(k), int(n)


def _title(meta: dict, normalization) -> str:
    kind = f"{meta['activation']}{', PNI' if meta['pni'] else ''}"
    behind = "" if normalization is None else f"; inputs normalised by mean {list(normalization[0])}, std " \
        f"{list(normalization[1])}"
    return f"{meta['model']} ({kind}) trained with {meta.get('method', '?')} on {meta['dataset']}{behind}"


def run_eval(args) -> int:
    with held_folder(args.out):
        return _eval(args)


def _user_model(args):
    """(model, meta) from ``--model PKG.MODULE:FACTORY --weights FILE``."""
    from ..models import load_weights, model_from_import

    if not is_import_path(args.model):
        raise ValueError(f"--model {args.model!r}: expected PKG.MODULE:FACTORY (a built-in model comes from "
                         "--checkpoint)")
    if args.weights is None or args.dataset is None:
        raise ValueError("--model needs --weights FILE (or --checkpoint) and --dataset")
    model = load_weights(model_from_import(args.model, model_args(args.model_args)), args.weights).eval()
    meta = {"model": args.model, "activation": "user", "pni": False, "dataset": args.dataset,
            "eps": eps_for(args), "method": "?"}
    return model, meta


def _model(args):
    """(model, meta, normalization) from --checkpoint [--model] or --model --weights."""
    from ..train.checkpoint import model_from_checkpoint

    if args.model is None and args.checkpoint is None:
        raise ValueError("give --checkpoint (written by `robustkernels train`) or --model PKG.MODULE:FACTORY")
    if args.checkpoint is None:
        model, meta = _user_model(args)
    elif args.weights is not None:
        raise ValueError("give --checkpoint or --weights, not both")
    else:
        model, meta = model_from_checkpoint(args.checkpoint, args.model)
        if args.model_args != "{}" and model_args(args.model_args) != meta.get("model_args"):
            raise ValueError(f"--model-args differ from the ones {args.checkpoint!r} was trained with "
                             f"({meta.get('model_args')}); leave --model-args out")
    normalization = parse_normalization(args.normalization)
    if normalization is None and meta.get("normalization") is not None:
        normalization = tuple(tuple(v) for v in meta["normalization"])  # what the model was trained behind
    return model, meta, normalization


def _eval(args) -> int:
    import torch

    from ..data import take
    from ..eval import evaluate
    from ..eval.corruptions import CORRUPTIONS
    from ..train.checkpoint import model_from_checkpoint

    if args.shard is not None and not args.out:
        raise ValueError("--shard keeps the shard's state file in --out: pass --out")
    if args.resume and not (args.out and (args.suite == "autoattack" or args.shard is not None)):
        raise ValueError("--resume continues a killed run from its state file: it needs --out and --suite autoattack "
                         "or --shard")
    corruptions = "all" if args.corruptions == "all" else [c for c in args.corruptions.split(",") if c]
    unknown = [c for c in ([] if corruptions == "all" else corruptions) if c not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"--corruptions: {', '.join(unknown)} not among all,{','.join(CORRUPTIONS)}")
    model, meta, normalization = _model(args)
    surrogate = model_from_checkpoint(args.surrogate)[0] if args.surrogate else None
    args.dataset = args.dataset or meta["dataset"]
    _, test = load_data(args, train=False)
    shape = list(test[0][0].shape)
    if "in_channels" in meta and shape != [meta["in_channels"], meta["image_size"], meta["image_size"]]:
        raise ValueError(f"--dataset {args.dataset}: images are {'x'.join(map(str, shape))} but the checkpoint's "
                         f"model takes {meta['in_channels']}x{meta['image_size']}x{meta['image_size']} (it was "
                         f"trained on {meta['dataset']})")
    check_fits(model, test, normalization)
    test = take(test, 0, args.samples)  # a Dataset stays lazy: evaluate streams it
    if args.shard is None:  # under torchrun the processes share the batches (one report, from rank 0)
        from ..common import model_device
        from ..train.distributed import init_from_env

        init_from_env(model_device(model))
    report = evaluate(model, test, eps=meta["eps"] if args.eps is None else args.eps,
                      norm=args.norm or meta.get("norm", "linf"), attacks=[a for a in args.attacks.split(",") if a],
                      eot_iter=args.eot_iter, batch_size=args.batch_size, checks=not args.no_checks,
                      check_samples=args.check_samples, generator=torch.Generator().manual_seed(args.seed),
                      progress=not args.no_progress, suite=args.suite, autoattack=_autoattack_options(args),
                      autocast=None if args.autocast == "fp32" else args.autocast,
                      channels_last={"on": True, "off": False}.get(args.channels_last, "auto"),
                      compile=args.compile, surrogate=surrogate, corruptions=corruptions,
                      certify=args.certify, normalization=normalization, title=_title(meta, normalization),
                      **_shard_options(args))
    end_distributed()
    if not first_process():  # torchrun: every process holds the report; the first writes it
        return 0
    print(report.to_markdown())
    if args.shard is not None:
        print(f"shard {args.shard[0]} of {args.shard[1]}: its state is {os.path.join(args.out, STATE_FILE)}; "
              "`robustkernels merge` the N shards' folders for the report")
        return 0
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        report.to_json(os.path.join(args.out, "report.json"))
        with open(os.path.join(args.out, "report.md"), "w") as f:
            f.write(report.to_markdown() + "\n")
        for path in report.plot(args.out):
            print(f"wrote {path}")
    return 0


STATE_FILE = "eval_state.json"  # a shard's state file in --out


def _shard_options(args) -> dict:
    if args.shard is None:
        return {}
    return {"shard": args.shard, "state_path": os.path.join(args.out, STATE_FILE), "resume": args.resume}


def _autoattack_options(args):
    """AutoAttack's settings from ``--version``, ``--aa-attacks``, ``--individual`` and ``--resume``
    (the state file lives in ``--out``)."""
    from ..eval import AutoAttackOptions

    keeps = args.out and args.suite == "autoattack" and args.shard is None  # a shard keeps it beside its own state
    state = os.path.join(args.out, "autoattack_state.json") if keeps else None
    attacks = None if args.aa_attacks is None else tuple(a for a in args.aa_attacks.split(",") if a)
    return AutoAttackOptions(version=args.version, attacks=attacks, individual=args.individual, state_path=state,
                             resume=args.resume and state is not None)
