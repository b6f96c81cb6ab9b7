"""Natural corruptions at the five CIFAR-10-C severities (Hendrycks & Dietterich 2019), generated
in torch on the fly (no download): the parameters of the benchmark's ``make_cifar_c.py``. Motion
blur draws a line kernel at a random angle weighted by a Gaussian along it, an approximation of
the ImageMagick blur the benchmark used; the others follow its definitions.

``corrupt(x, name, severity, generator)`` maps images [N, C, H, W] in [0, 1] to [0, 1];
:func:`corruption_accuracy` tabulates a model's accuracy per corruption and severity."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ..common import frozen_model, model_device
from ..data import batches
from ..threat import normalize

PARAMETERS = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # sigma
    "shot_noise": (500, 250, 100, 75, 50),  # photons per unit intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # share of salt-and-pepper entries
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # disk radius, alias blur
    "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),  # radius, sigma (pixels)
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor towards the image mean
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
    "jpeg_compression": (80, 65, 58, 50, 40),  # quality
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # downscale factor
}
CORRUPTIONS = tuple(PARAMETERS)


def _gaussian_1d(sigma: float, radius: int) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    return k / k.sum()


def _filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each channel convolved with the 2-D ``kernel`` (odd size), borders reflected."""
    c, (kh, kw) = x.shape[1], kernel.shape
    fits = kh // 2 < x.shape[2] and kw // 2 < x.shape[3]  # reflection needs the image to be wider than the pad
    padded = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="reflect" if fits else "replicate")
    weight = kernel.to(x.device, x.dtype).expand(c, 1, kh, kw)
    return F.conv2d(padded, weight, groups=c)


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The benchmark's defocus kernel: a 17x17 disk of ``radius``, normalised, then a 3x3 Gaussian
    blur of ``alias_blur``."""
    t = torch.arange(-8, 9, dtype=torch.float32)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius ** 2).float()
    disk = disk / disk.sum()
    g = _gaussian_1d(alias_blur, 1)
    return F.conv2d(F.pad(disk[None, None], (1, 1, 1, 1), mode="reflect"), (g[:, None] * g[None, :])[None, None])[0, 0]


def motion_kernel(radius: int, sigma: float, angle: float) -> torch.Tensor:
    """A one-sided line of ``radius`` pixels from the centre at ``angle`` (degrees), weighted by a
    Gaussian of ``sigma`` along it."""
    size = 2 * radius + 1
    kernel = torch.zeros(size, size)
    weights = torch.exp(-torch.arange(radius + 1, dtype=torch.float32) ** 2 / (2 * sigma * sigma))
    dy, dx = math.sin(math.radians(angle)), math.cos(math.radians(angle))
    for i, w in enumerate(weights.tolist()):
        kernel[radius + round(i * dy), radius + round(i * dx)] += w
    return kernel / kernel.sum()


def _brightness(x: torch.Tensor, c: float) -> torch.Tensor:
    """HSV value + c (clipped), hue and saturation kept: the RGB channels scale by V'/V."""
    if x.shape[1] != 3:
        return (x + c).clamp(0, 1)
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(max=1)
    return torch.where(v > 0, x * v_new / v.clamp_min(1e-12), v_new.expand_as(x))


def corrupt(x: torch.Tensor, name: str, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` [N, C, H, W] in [0, 1] under corruption ``name`` at ``severity`` 1..5; a new tensor in [0, 1]."""
    if name not in PARAMETERS:
        raise ValueError(f"corruption must be one of {CORRUPTIONS}, got {name!r}")
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an int in 1..5, got {severity!r}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"x must be float images [N, C, H, W], got {getattr(x, 'shape', type(x).__name__)}")
    c = PARAMETERS[name][severity - 1]
    device = x.device
    if name == "gaussian_noise":
        out = x + c * torch.randn(x.shape, generator=generator).to(device)
    elif name == "shot_noise":
        out = torch.poisson(x.cpu().double() * c, generator=generator).float().to(device) / c
    elif name == "impulse_noise":
        u = torch.rand(x.shape, generator=generator).to(device)
        salt = torch.rand(x.shape, generator=generator).to(device) < 0.5
        out = torch.where(u < c, salt.to(x.dtype), x)
    elif name == "defocus_blur":
        out = _filter(x, disk_kernel(*c))
    elif name == "motion_blur":
        angle = float(torch.empty(()).uniform_(-45, 45, generator=generator))
        out = _filter(x, motion_kernel(c[0], c[1], angle))
    elif name == "contrast":
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        out = (x - mean) * c + mean
    elif name == "brightness":
        out = _brightness(x, c)
    elif name == "jpeg_compression":
        from ..defences import JPEGCompression

        out = JPEGCompression(c)(x)
    else:  # pixelate: box-downscale, then nearest-upscale back
        h, w = x.shape[-2:]
        small = F.interpolate(x, size=(max(1, int(h * c)), max(1, int(w * c))), mode="area")
        out = F.interpolate(small, size=(h, w), mode="nearest")
    return out.clamp(0, 1).to(x.dtype)


@dataclass
class CorruptionReport:
    """Accuracy (fraction) per corruption and severity, the clean accuracy and their mean."""

    clean_accuracy: float
    accuracy: dict[str, list[float]] = field(default_factory=dict)  # corruption -> [severity 1..5]
    severities: tuple = (1, 2, 3, 4, 5)

    @property
    def mean_accuracy(self) -> float:
        values = [a for accs in self.accuracy.values() for a in accs]
        return sum(values) / len(values) if values else float("nan")

    def to_markdown(self) -> str:
        head = "| corruption | " + " | ".join(f"severity {s}" for s in self.severities) + " | mean |"
        lines = [f"Clean accuracy {100 * self.clean_accuracy:.1f}%; mean corruption accuracy "
                 f"{100 * self.mean_accuracy:.1f}%", "", head, "|---" * (len(self.severities) + 2) + "|"]
        for name, accs in self.accuracy.items():
            cells = " | ".join(f"{100 * a:.1f}%" for a in accs)
            lines.append(f"| {name} | {cells} | {100 * sum(accs) / len(accs):.1f}% |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {**asdict(self), "mean_accuracy": self.mean_accuracy}

    def plot(self, path) -> str:
        """Accuracy against severity, one line per corruption, the clean accuracy dashed."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name, accs in self.accuracy.items():
            ax.plot(self.severities, [100 * a for a in accs], marker="o", label=name)
        ax.axhline(100 * self.clean_accuracy, color="grey", linestyle="--", label="clean")
        ax.set(xlabel="severity", ylabel="accuracy (%)", ylim=(0, 100), title="accuracy under corruptions")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return str(path)


class CorruptionTally:
    """Correct counts under each corruption and severity, fed batch by batch (the streaming form
    :func:`corruption_accuracy` and ``evaluate`` share); each random corruption draws from its
    own generator seeded from ``seed``."""

    def __init__(self, corruptions=CORRUPTIONS, severities=(1, 2, 3, 4, 5), seed: int = 0):
        unknown = [c for c in corruptions if c not in PARAMETERS]
        if unknown:
            raise ValueError(f"corruptions must be among {CORRUPTIONS}, got {unknown}")
        self.severities = tuple(severities)
        self.generators = {name: torch.Generator().manual_seed((seed * 1000 + i) % 2**63)  # seeds of 63 bits fit
                           for i, name in enumerate(corruptions)}
        self.clean, self.correct, self.seen = 0, {name: [0] * len(self.severities) for name in corruptions}, 0

    @torch.no_grad()
    def add(self, forward, x: torch.Tensor, y: torch.Tensor) -> None:
        """One batch: ``forward`` maps inputs in [0, 1] to logits (eval mode, on x's device)."""
        self.clean += int((forward(x).argmax(1) == y).sum())
        for name, generator in self.generators.items():
            for k, s in enumerate(self.severities):
                self.correct[name][k] += int((forward(corrupt(x, name, s, generator)).argmax(1) == y).sum())
        self.seen += len(y)

    def report(self) -> CorruptionReport:
        n = max(self.seen, 1)
        accuracy = {name: [c / n for c in counts] for name, counts in self.correct.items()}
        return CorruptionReport(self.clean / n, accuracy, self.severities)


def corruption_accuracy(model: nn.Module, data, *, corruptions=CORRUPTIONS, severities=(1, 2, 3, 4, 5),
                        batch_size: int = 256, seed: int = 0, normalization=None) -> CorruptionReport:
    """Accuracy of ``model`` (eval mode) on ``data`` (tensors, a Dataset or a DataLoader of inputs
    in [0, 1], streamed) under each corruption and severity; ``normalization=(mean, std)`` as for
    the attacks. The random corruptions draw from generators seeded by ``seed`` (the global RNG is
    untouched)."""
    tally = CorruptionTally(corruptions, severities, seed)
    device = model_device(model)
    with frozen_model(model, "eval"):
        for x, y, _ in batches(data, batch_size):
            tally.add(lambda v: model(normalize(v, normalization)), x.to(device), y.to(device))
    return tally.report()
