"""Argument types and checks for the command line: every value a user can get wrong is refused
by the parser or before any work starts, with one line naming the option."""

from __future__ import annotations

import argparse
import math
import os
from fractions import Fraction


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (flags and options whose help says what happens
    without them excepted); descriptions kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS or \
                "%(default)" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def number(*, minimum: float | None = 0.0, positive: bool = False, fraction: bool = False):
    """An argparse type: a finite float (or a fraction like 8/255 if ``fraction``), >= ``minimum``
    (> 0 if ``positive``). argparse prefixes each error with ``argument OPTION:``."""

    def parse(text: str) -> float:
        try:
            value = float(Fraction(text)) if fraction else float(text)
        except OverflowError:
            value = math.inf
        except (ValueError, ZeroDivisionError):
            kind = "a number or a fraction like 8/255" if fraction else "a number"
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
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


def held_folder(path: str | None, option: str = "--out"):
    """The run lock on ``path`` (:func:`robustkernels.train.rundir.run_lock`) for the first process
    of a run; a no-op without a folder, and for the other ``torchrun`` processes of the same run."""
    import contextlib

    from ..train.rundir import run_lock

    if path is None or int(os.environ.get("RANK", "0")) != 0:
        return contextlib.nullcontext()
    return run_lock(path, option)


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


def load_data(args):
    """``((x_train, y_train), (x_test, y_test))`` of ``--dataset`` (the user's own files give only the
    test pair: ``(None, (x, y))``)."""
    from ..data import ImageFolder, as_tensors, download, load_dataset, load_tensors

    if args.dataset in ("imagefolder", "tensors"):
        if args.data_dir is None:
            raise ValueError(f"--dataset {args.dataset} reads --data-dir (a folder of class subfolders, or a file)")
        if args.dataset == "tensors":
            return None, load_tensors(args.data_dir)
        return None, as_tensors(ImageFolder(args.data_dir), name="--data-dir")
    if getattr(args, "download", False) and args.dataset != "digits":
        download(args.dataset, args.data_dir)
    return load_dataset(args.dataset, args.data_dir, seed=args.seed)
