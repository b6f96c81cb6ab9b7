"""robustkernels: adversarial robustness on fused Triton and C++/CUDA kernels."""

from . import (
    _extension,  # noqa: F401  (loads the C++ extension, or warns once why not)
    attacks,
    data,
    eval,
    models,
    nn,
    ops,
    threat,
    train,
)
from ._backend import (
    BackendUnavailableError,
    available_backends,
    requested_backend,
    use_backend,
)

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "attacks",
    "data",
    "eval",
    "models",
    "available_backends",
    "nn",
    "ops",
    "threat",
    "train",
    "requested_backend",
    "use_backend",
    "__version__",
]
