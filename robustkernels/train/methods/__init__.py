"""Training methods, one small class per file; :func:`make_method` builds one by name."""

from __future__ import annotations

from .aaer import AAER
from .atta import ATTA
from .base import BatchResult, Method, StepContext
from .elle import ELLE
from .fat import FAT
from .fgsm_mep_cs import FGSMMEPCS
from .fgsm_pgi import FGSMPGI
from .fgsm_rs import FGSMRS
from .fgsm_rs_cs import FGSMRSCS
from .free_at import FreeAT
from .gat import GAT
from .grad_align import GradAlign
from .hybrid import Hybrid, scheduled_eps
from .ibp import IBP
from .liet import LIET
from .mixed import Mixed
from .n_fgsm import NFGSM
from .nuat import NuAT
from .pgd_at import PGDAT
from .pni_at import PNIAT
from .sensitivity_reg import SensitivityRegularized
from .standard import Standard
from .trades import TRADES

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in
                                    (Standard, PGDAT, TRADES, FGSMRS, NFGSM, FreeAT, ATTA, FAT, Mixed,
                                     NuAT, GAT, GradAlign, ELLE, AAER,
                                     FGSMPGI, FGSMRSCS, FGSMMEPCS, LIET,
                                     Hybrid, PNIAT, SensitivityRegularized, IBP)}


def make_method(name: str, **kwargs) -> Method:
    """``make_method("pgd-at", eps=8/255, steps=10)``; names take ``-`` or ``_``."""
    key = name.replace("-", "_") if isinstance(name, str) else name
    if key not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {name!r}")
    try:
        return METHODS[key](**kwargs)
    except TypeError as error:
        if "unexpected keyword argument" not in str(error):
            raise
        accepted = sorted(_keywords(METHODS[key]))
        unknown = str(error).split("unexpected keyword argument ")[-1]
        raise TypeError(f"make_method({name!r}): unexpected argument {unknown}; it takes {', '.join(accepted)}") \
            from None


def _keywords(cls) -> set[str]:
    """The keyword arguments a method class takes: its own and those of its bases' ``__init__``."""
    import inspect

    names = set()
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is not None:
            names |= {p.name for p in inspect.signature(init).parameters.values()
                      if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}
    return names


__all__ = ["ATTA", "FAT", "FGSMRS", "IBP", "METHODS", "NFGSM", "PGDAT", "PNIAT", "TRADES", "BatchResult", "FreeAT",
           "Hybrid", "Method", "Mixed", "SensitivityRegularized", "Standard", "StepContext", "make_method",
           "AAER", "ELLE", "GAT", "GradAlign", "NuAT",
           "FGSMMEPCS", "FGSMPGI", "FGSMRSCS", "LIET",
           "scheduled_eps"]
