"""What a module swap (ReLU -> LWTA, Conv2d/Linear -> PNI) cannot reach: operations called as
functions in a ``forward`` (``F.relu(x)``, ``torch.relu``, ``x.relu()``, ``F.conv2d``) rather than
held as submodules. Found by reading the ``forward`` source of every module class in the model."""

from __future__ import annotations

import inspect
import re
import warnings

from torch import nn


def functional_calls(model: nn.Module, names: tuple[str, ...]) -> list[str]:
    """``"Class.forward line N: code"`` for every call of ``names`` as a function or tensor
    method in the ``forward`` of a module class used in ``model`` (sources that cannot be read,
    e.g. compiled or built-in modules, are skipped)."""
    # F.relu(, torch.relu(, functional.relu(, x.relu( - but not self.relu(, a submodule's call
    pattern = re.compile(r"(?<!\bself)\.(?:" + "|".join(map(re.escape, names)) + r")_?\s*\(")
    found, seen = [], set()
    for module in model.modules():
        cls = type(module)
        if cls in seen or cls.__module__.startswith(("torch.", "robustkernels.nn.")):  # ours swap nothing
            continue
        seen.add(cls)
        try:
            lines, start = inspect.getsourcelines(cls.forward)
        except (OSError, TypeError):
            continue
        for offset, line in enumerate(lines):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                found.append(f"{cls.__name__}.forward line {start + offset}: {code.strip()}")
    return found


def report(what: str, converted: int, missed: list[str], kind: str, strict: bool) -> None:
    """Warn (or, with ``strict``, raise ``ValueError``) about what a conversion did not reach."""
    problems = []
    if missed:
        problems.append(f"{len(missed)} functional {kind} call(s) in forward() were not converted - make them "
                        f"modules: " + "; ".join(missed))
    if converted == 0:
        problems.append(f"found no {kind} module to convert")
    if not problems:
        return
    message = f"{what}: " + " and ".join(problems)
    if strict:
        raise ValueError(message)
    warnings.warn(message, UserWarning, stacklevel=3)
