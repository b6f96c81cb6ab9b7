"""The ``--model`` option of train, eval and compare: a built-in architecture by name or the
user's ``PKG.MODULE:FACTORY``; what a checkpoint records of it (never the pickled model: the
import path and the arguments), and one forward pass checking the model against the data."""

from __future__ import annotations

import torch
from torch import nn

from .args import model_args


def is_import_path(spec: str | None) -> bool:
    return spec is not None and ":" in spec


def build(args, in_channels: int, image_size: int, num_classes: int) -> tuple[nn.Module, dict]:
    """(fresh model, the meta a checkpoint records to rebuild it) from ``--model`` (+ ``--model-args``
    for an import path; ``--activation`` / ``--pni`` for the built-ins)."""
    from ..models import build_model, model_from_import

    if is_import_path(args.model):
        kwargs = model_args(args.model_args)
        return model_from_import(args.model, kwargs), dict(model=args.model, model_args=kwargs, source="import",
                                                           activation="user", pni=False)
    if args.model_args != "{}":
        raise ValueError("--model-args is for --model PKG.MODULE:FACTORY; the built-in models take --activation "
                         "and --pni")
    activation, pni = getattr(args, "activation", "relu"), getattr(args, "pni", False)
    model = build_model(args.model, activation=activation, pni=pni, in_channels=in_channels,
                        num_classes=num_classes, image_size=image_size)
    return model, dict(model=args.model, activation=activation, pni=pni, in_channels=in_channels,
                       image_size=image_size, num_classes=num_classes)


def build_for(args, data, seed: int) -> tuple[nn.Module, dict]:
    """:func:`build` sized to ``data`` (a Dataset: its first image's shape, its ``num_classes``,
    else 10), with the global RNG seeded by ``seed`` first (the same initial weights each call)."""
    shape = data[0][0].shape
    torch.manual_seed(seed)
    return build(args, in_channels=shape[0], image_size=shape[-1], num_classes=getattr(data, "num_classes", None) or 10)


def check_fits(model: nn.Module, data, normalization) -> None:
    """One eval-mode forward pass on the first sample of ``data`` (a Dataset): the model takes the
    data's inputs and returns logits for at least the data's classes; else one line saying so."""
    from ..threat import normalize

    x = data[0][0][None]
    classes = getattr(data, "num_classes", None)
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(normalize(x.to(next(model.parameters(), x).device), normalization))
    except RuntimeError as exc:
        raise ValueError(f"the model does not take the data's inputs of shape {list(x.shape[1:])} "
                         f"({str(exc).splitlines()[0]})") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or (classes is not None and out.shape[1] < classes):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model returns {shape} for one input but the data has {classes} classes")
