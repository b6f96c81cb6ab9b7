"""Naming a model's logits when it returns more than a tensor.

Every attack, ``evaluate``, ``autoattack`` and ``fit`` takes a model that returns a ``[B, K]``
logits tensor. A model that returns a tuple, a dict or an output object (Hugging Face image
classifiers return one with ``.logits``) is wrapped once, naming the element to use::

    model = LogitsOf(hf_model, output="logits")     # attribute or key
    model = LogitsOf(two_headed, output=0)          # position in a tuple or list

A model returning anything but a tensor is refused everywhere with a message that names this
wrapper: nothing guesses which element is the logits.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class LogitsOf(nn.Module):
    """``model`` with its logits picked out of its output.

    Args:
        model: any module; its parameters, buffers, hooks and mode stay its own (this wrapper
            holds it as ``.model`` and has none of its own).
        output: a str (a dict key, or an attribute of the output object) or an int (a position
            in a tuple or list). The element must be a tensor, else a TypeError says what it is.
    """

    def __init__(self, model: nn.Module, output: str | int = "logits"):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if isinstance(output, bool) or not isinstance(output, str | int):
            raise TypeError(f"output must be a str (key or attribute) or an int (position), got {output!r}")
        self.model, self.output = model, output

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return select_output(self.model(*args, **kwargs), self.output)

    def extra_repr(self) -> str:
        return f"output={self.output!r}"


def select_output(result, output: str | int) -> torch.Tensor:
    """The element ``output`` names in a model's ``result`` (see :class:`LogitsOf`)."""
    if isinstance(output, int):
        if not isinstance(result, tuple | list):
            raise TypeError(f"output={output!r} is a position, but the model returned {type(result).__name__}")
        if not -len(result) <= output < len(result):
            raise ValueError(f"output={output!r}: the model returned {len(result)} elements")
        chosen = result[output]
    elif isinstance(result, Mapping):
        if output not in result:
            raise ValueError(f"output={output!r}: the model's dict has keys {sorted(map(str, result))}")
        chosen = result[output]
    elif hasattr(result, output):
        chosen = getattr(result, output)
    else:
        raise TypeError(f"output={output!r}: the model returned {type(result).__name__}, with no such key or attribute")
    if not isinstance(chosen, torch.Tensor):
        raise TypeError(f"output={output!r} is a {type(chosen).__name__}, not a logits tensor")
    return chosen
