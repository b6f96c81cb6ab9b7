"""``robustkernels eval``: its options and the run (library logic lives in robustkernels.eval)."""

from __future__ import annotations

import os

from ..data import DATASET_SHAPES, USER_DATASETS
from .args import command, eot_iter, held_folder, integer, load_data, number, output_folder


def add_eval(commands) -> None:
    from ..eval import ATTACKS

    p = command(commands, "eval", "robustness report of a checkpoint written by `robustkernels train`, or of "
                "any model from an import path", run_eval)
    p.add_argument("--checkpoint", default=None, help="checkpoint.pt written by `robustkernels train`")
    p.add_argument("--model", default=None,
                   help="instead of --checkpoint: PKG.MODULE:FACTORY of your own model (the current directory on the "
                        "path), with --weights and --dataset")
    p.add_argument("--model-args", default="{}", help="--model: keyword arguments of FACTORY, as a JSON object")
    p.add_argument("--weights", default=None,
                   help="--model: a state_dict file (plain, or under 'state_dict'/'model'; DDP prefixes stripped), "
                        "loaded with weights_only")
    p.add_argument("--normalization", default=None,
                   help="the model's input normalisation: cifar10, imagenet, or MEAN,STD with per-channel values "
                        "joined by '/' (e.g. 0.5/0.5/0.5,0.25/0.25/0.25); attacks and reports stay in [0, 1]")
    p.add_argument("--dataset", choices=tuple(DATASET_SHAPES) + USER_DATASETS, default=None,
                   help="default: the training dataset; imagefolder (--data-dir with one subfolder per class) or "
                        "tensors (--data-dir a .pt of {'x', 'y'} or .npz) for your own test images")
    p.add_argument("--data-dir", help="folder with the CIFAR-10 python batches or the MNIST IDX files")
    p.add_argument("--eps", type=number(fraction=True), default=None, help="default: the training eps")
    p.add_argument("--norm", choices=("linf", "l2"), default=None, help="default: the training norm")
    p.add_argument("--attacks", default="fgsm,pgd,cw,apgd-ce,apgd-dlr", help="comma-separated: " + ",".join(ATTACKS))
    p.add_argument("--samples", type=integer(), default=None,
                   help="evaluate the first N test samples (default: all)")
    p.add_argument("--suite", choices=("default", "autoattack"), default="default",
                   help="autoattack: also run AutoAttack (the field's standard number) with its log")
    p.add_argument("--version", choices=("auto", "standard", "plus", "rand", "custom"), default="auto",
                   help="AutoAttack version (auto: rand for a stochastic model, else standard; custom: --aa-attacks)")
    p.add_argument("--aa-attacks", default=None,
                   help="--version custom: comma-separated among apgd-ce,apgd-dlr,apgd-t,fab,fab-t,square")
    p.add_argument("--resume", action="store_true",
                   help="--suite autoattack with --out: continue a killed run from --out/autoattack_state.json")
    p.add_argument("--individual", action="store_true",
                   help="AutoAttack: every attack on every point (each attack's robust accuracy), not the cascade")
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


def run_eval(args) -> int:
    with held_folder(output_folder(args.out)):
        return _eval(args)


NORMALIZATIONS = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
                  "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def parse_normalization(text: str | None):
    """``--normalization``: a named one, or ``MEAN,STD`` with per-channel values joined by '/'."""
    if text is None:
        return None
    if text in NORMALIZATIONS:
        return NORMALIZATIONS[text]
    try:
        mean, std = (tuple(float(v) for v in part.split("/")) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--normalization {text!r}: expected cifar10, imagenet or MEAN,STD "
                         "(per-channel values joined by '/')") from None
    if len(mean) != len(std) or any(not s > 0 for s in std):
        raise ValueError(f"--normalization {text!r}: MEAN and STD need as many values, STD > 0")
    return mean, std


def _user_model(args):
    """(model, meta) from ``--model PKG.MODULE:FACTORY --weights FILE``."""
    import json

    from ..data import DEFAULT_EPS
    from ..models import load_weights, model_from_import

    if args.checkpoint is not None:
        raise ValueError("give --checkpoint or --model, not both")
    if args.weights is None or args.dataset is None:
        raise ValueError("--model needs --weights FILE and --dataset")
    try:
        kwargs = json.loads(args.model_args)
    except ValueError as exc:
        raise ValueError(f"--model-args is not JSON ({exc})") from None
    model = load_weights(model_from_import(args.model, kwargs), args.weights).eval()
    if args.eps is None and args.dataset not in DEFAULT_EPS:
        raise ValueError(f"--dataset {args.dataset}: give --eps (no default radius for your own data)")
    meta = {"model": args.model, "activation": "user", "pni": False, "dataset": args.dataset,
            "eps": DEFAULT_EPS.get(args.dataset, args.eps), "method": "?"}
    return model, meta


def _check_fits(model, x, y, normalization) -> None:
    """One forward pass on a sample: the model takes the data's inputs and has enough classes."""
    import torch

    from ..threat import normalize

    try:
        with torch.no_grad():
            out = model.eval()(normalize(x[:1], normalization))
    except RuntimeError as exc:
        raise ValueError(f"the model does not take the data's inputs of shape {list(x.shape[1:])} "
                         f"({str(exc).splitlines()[0]})") from None
    if out.dim() != 2 or int(y.max()) >= out.shape[1]:
        raise ValueError(f"the model returns {list(out.shape)} for one input but the data has labels up to "
                         f"{int(y.max())}")


def _eval(args) -> int:
    import torch

    from ..eval import evaluate
    from ..eval.corruptions import CORRUPTIONS
    from ..train.checkpoint import model_from_checkpoint

    if args.resume and not (args.out and args.suite == "autoattack"):
        raise ValueError("--resume continues AutoAttack's state: it needs --suite autoattack and --out")
    corruptions = "all" if args.corruptions == "all" else [c for c in args.corruptions.split(",") if c]
    unknown = [c for c in ([] if corruptions == "all" else corruptions) if c not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"--corruptions: {', '.join(unknown)} not among all,{','.join(CORRUPTIONS)}")
    normalization = parse_normalization(args.normalization)
    if args.model is None and args.checkpoint is None:
        raise ValueError("give --checkpoint (written by `robustkernels train`) or --model PKG.MODULE:FACTORY")
    model, meta = _user_model(args) if args.model is not None else model_from_checkpoint(args.checkpoint)
    surrogate = model_from_checkpoint(args.surrogate)[0] if args.surrogate else None
    args.dataset = args.dataset or meta["dataset"]
    _, (x, y) = load_data(args)
    if "in_channels" in meta:
        expected = [meta["in_channels"], meta["image_size"], meta["image_size"]]
        if list(x.shape[1:]) != expected:
            raise ValueError(f"--dataset {args.dataset}: images are {'x'.join(map(str, x.shape[1:]))} but the "
                             f"checkpoint's model takes {'x'.join(map(str, expected))} (it was trained on "
                             f"{meta['dataset']})")
    _check_fits(model, x, y, normalization)
    if args.samples is not None:
        x, y = x[:args.samples], y[:args.samples]
    report = evaluate(model, (x, y), eps=meta["eps"] if args.eps is None else args.eps,
                      norm=args.norm or meta.get("norm", "linf"), attacks=[a for a in args.attacks.split(",") if a],
                      eot_iter=args.eot_iter, batch_size=args.batch_size, checks=not args.no_checks,
                      check_samples=args.check_samples, generator=torch.Generator().manual_seed(args.seed),
                      progress=not args.no_progress, suite=args.suite, version=args.version,
                      aa_attacks=None if args.aa_attacks is None else [a for a in args.aa_attacks.split(",") if a],
                      aa_individual=args.individual, aa_resume=args.resume,
                      aa_state_path=os.path.join(args.out, "autoattack_state.json")
                      if args.out and args.suite == "autoattack" else None,
                      autocast=args.autocast, surrogate=surrogate, corruptions=corruptions,
                      certify=args.certify, normalization=normalization,
                      title=f"{meta['model']} ({meta['activation']}"
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
