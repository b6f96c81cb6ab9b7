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
    return METHODS[key](**kwargs)


__all__ = ["ATTA", "FAT", "FGSMRS", "IBP", "METHODS", "NFGSM", "PGDAT", "PNIAT", "TRADES", "BatchResult", "FreeAT",
           "Hybrid", "Method", "Mixed", "SensitivityRegularized", "Standard", "StepContext", "make_method",
           "AAER", "ELLE", "GAT", "GradAlign", "NuAT",
           "FGSMMEPCS", "FGSMPGI", "FGSMRSCS", "LIET",
           "scheduled_eps"]
