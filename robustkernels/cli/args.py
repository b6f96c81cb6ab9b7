"""Argument types and checks for the command line: every value a user can get wrong is refused
by the parser or before any work starts, with one line naming the option."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
from fractions import Fraction

from ..threat import FLOAT32_MAX


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (flags and options whose help says what happens
    without them excepted); descriptions kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS or \
                "%(default)" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def number(*, minimum: float | None = 0.0, positive: bool = False, fraction: bool = False, below: float | None = None):
    """An argparse type: a finite float within float32's range (or a fraction like 8/255 if
    ``fraction``), >= ``minimum`` (> 0 if ``positive``), < ``below`` if given. argparse prefixes
    each error with ``argument OPTION:``."""

    def parse(text: str) -> float:
        try:
            value = float(Fraction(text)) if fraction else float(text)
        except OverflowError:
            value = math.inf
        except (ValueError, ZeroDivisionError):
            kind = "a number or a fraction like 8/255" if fraction else "a number"
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}") from None
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
            raise argparse.ArgumentTypeError(f"must be finite (at most 3.4e38, float32's largest), got {text}")
        if below is not None and not value < below:
            raise argparse.ArgumentTypeError(f"must be < {below:g}, got {text}")
        if positive and not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {text}")
        return value

    return parse


def integer(*, minimum: int = 1):
    """An argparse type: an int >= ``minimum`` (errors prefixed ``argument OPTION:`` by argparse)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse


def eot_iter(text: str):
    """``auto`` or an int >= 1."""
    return "auto" if text == "auto" else integer()(text)


def output_folder(path: str | None, option: str = "--out") -> str | None:
    """``path`` created and proven writable (a probe file written and removed) before any work; a
    ValueError naming ``option`` if it is a file or cannot be written."""
    from ..train.rundir import probe_writable

    if path is None:
        return None
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{option} {path!r} is a file; give a folder")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{option} {path!r} cannot be created ({parent!r} is not a folder)")
    return probe_writable(path, option)


@contextlib.contextmanager
def held_folder(path: str | None, option: str = "--out"):
    """``path`` made (:func:`output_folder`) and locked (:func:`robustkernels.train.rundir.run_lock`)
    for the first process of a run; a no-op without a folder, and for the other ``torchrun``
    processes of the same run. A folder this run created is removed again if the run fails
    before writing anything into it."""
    from ..train.rundir import run_lock

    if path is None or int(os.environ.get("RANK", "0")) != 0:
        output_folder(path, option)
        yield
        return
    created = not os.path.exists(path)
    try:
        with run_lock(output_folder(path, option), option):
            yield
    except BaseException:
        if created and os.path.isdir(path):
            _remove_if_nothing_written(path)
        raise


def first_process() -> bool:
    """Whether this is the process that prints and writes: the only one, or torchrun's rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


def end_distributed() -> None:
    """Under torchrun: wait for every process, then close the process group (no process tears
    its connections down while a peer may still use them); nothing otherwise."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _remove_if_nothing_written(path: str) -> None:
    """The folder a failed run created, gone again if all it holds is empty files (the log opened
    before the first epoch); anything with content - a checkpoint to resume from - stays."""
    names = os.listdir(path)
    if all(os.path.isfile(os.path.join(path, n)) and os.path.getsize(os.path.join(path, n)) == 0 for n in names):
        for name in names:
            os.remove(os.path.join(path, name))
        os.rmdir(path)


def device(text: str | None):
    """The torch device to run on: ``text`` checked (``cuda`` needs a GPU), or cuda if there is
    one (the local rank's under torchrun), else cpu."""
    import torch

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if text is None:
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(text)
    except RuntimeError:
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {text!r}") from None
    if chosen.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {text!r}")
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {text}: no CUDA device is available on this machine")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ValueError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s)")
    return chosen


def command(commands, name: str, summary: str, run) -> argparse.ArgumentParser:
    p = commands.add_parser(name, help=summary, description=summary, formatter_class=HelpFormatter)
    p.set_defaults(run=run)
    return p


def load_data(args, train: bool = True):
    """``(train, test)`` of ``--dataset`` as Datasets (``train`` None when not asked for): the named
    sets held in memory, the user's image folders read on access; ``--download`` fetches first."""
    from ..data import download, load

    what = {"imagefolder": "a folder with one subfolder per class (train/ and val/ to train)",
            "tensors": "a .pt / .npz file of x and y (a folder of train.pt and test.pt to train)"}
    if args.dataset in what and args.data_dir is None:
        raise ValueError(f"--dataset {args.dataset} reads --data-dir ({what[args.dataset]})")
    if getattr(args, "download", False) and args.dataset != "digits":
        download(args.dataset, args.data_dir)
    test = load(args.dataset, args.data_dir, train=False, seed=args.seed)
    return (load(args.dataset, args.data_dir, train=True, seed=args.seed) if train else None), test


def eps_for(args) -> float:
    """``--eps``, or the radius the literature uses on ``--dataset``; the user's own data have none."""
    from ..data import DEFAULT_EPS

    if args.eps is not None:
        return args.eps
    if args.dataset not in DEFAULT_EPS:
        raise ValueError(f"--dataset {args.dataset}: give --eps (no default radius for your own data)")
    return DEFAULT_EPS[args.dataset]


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
    if len(mean) != len(std) or any(not s > 0 for s in std) or not all(map(math.isfinite, mean + std)):
        raise ValueError(f"--normalization {text!r}: MEAN and STD need as many values, finite, STD > 0")
    return mean, std


def model_args(text: str) -> dict:
    """``--model-args``: a JSON object of keyword arguments."""
    import json

    try:
        kwargs = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--model-args is not JSON ({exc})") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--model-args must be a JSON object of keyword arguments, got {text!r}")
    return kwargs


def add_model_options(p, default: str | None, builtin_help: str) -> None:
    """``--model`` (a built-in name or PKG.MODULE:FACTORY), ``--model-args`` and ``--normalization``."""
    p.add_argument("--model", default=default,
                   help=f"{builtin_help}, or PKG.MODULE:FACTORY of your own model (the current directory on the path)")
    p.add_argument("--model-args", default="{}", help="--model PKG.MODULE:FACTORY: its keyword arguments, as JSON")
    p.add_argument("--normalization", default=None,
                   help="the model's input normalisation: cifar10, imagenet, or MEAN,STD with per-channel values "
                        "joined by '/' (e.g. 0.5/0.5/0.5,0.25/0.25/0.25); attacks and reports stay in [0, 1]")
