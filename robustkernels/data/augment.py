"""The standard CIFAR augmentation (zero-pad, random crop, horizontal flip) as an explicit
transform: :class:`CropFlip` holds each image's crop offset and flip, so that the same transform
can be applied to a second tensor (an adversarial perturbation stored per sample, as ATTA does)
and inverted to write it back."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass
class CropFlip:
    """Per-image crop offsets ``dy, dx`` in ``[0, 2 padding]`` (into the zero-padded image) and
    ``flipped`` (horizontal flip after the crop); all CPU tensors of shape [N]."""

    padding: int
    dy: torch.Tensor
    dx: torch.Tensor
    flipped: torch.Tensor

    @classmethod
    def draw(cls, n: int, *, padding: int = 4, flip: bool = True,
             generator: torch.Generator | None = None) -> CropFlip:
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be an int >= 0, got {padding!r}")
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        flipped = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
        return cls(padding, dy, dx, flipped)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, C, H + 2p, W + 2p], zeros around."""
        p = self.padding
        return F.pad(x, (p, p, p, p))

    def _window(self, h: int, w: int, device: torch.device):
        rows = (self.dy[:, None] + torch.arange(h)[None, :]).to(device)  # [N, H]
        cols = (self.dx[:, None] + torch.arange(w)[None, :]).to(device)  # [N, W]
        batch = torch.arange(len(self.dy), device=device)[:, None, None]
        return batch, rows[:, :, None], cols[:, None, :]

    def from_padded(self, padded: torch.Tensor) -> torch.Tensor:
        """Crop then flip an already padded [N, C, H + 2p, W + 2p] tensor -> [N, C, H, W]."""
        h, w = padded.shape[2] - 2 * self.padding, padded.shape[3] - 2 * self.padding
        out = padded.permute(0, 2, 3, 1)[self._window(h, w, padded.device)].permute(0, 3, 1, 2)
        out = torch.where(self.flipped.to(padded.device)[:, None, None, None], out.flip(3), out)
        return out.contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The augmented batch: pad, crop, flip. x: [N, C, H, W]; a new tensor."""
        return self.from_padded(self.pad(x))

    def write_back(self, padded: torch.Tensor, out: torch.Tensor) -> None:
        """The inverse of :meth:`from_padded`, **in place**: un-flip ``out`` [N, C, H, W] and
        write it into the crop window of ``padded`` [N, C, H + 2p, W + 2p] (the rest is kept)."""
        out = torch.where(self.flipped.to(out.device)[:, None, None, None], out.flip(3), out)
        view = padded.permute(0, 2, 3, 1)
        view[self._window(out.shape[2], out.shape[3], padded.device)] = out.permute(0, 2, 3, 1).to(padded.dtype)


def random_crop_flip(x: torch.Tensor, *, padding: int = 4, flip: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """The standard CIFAR augmentation in torch: zero-pad by ``padding``, take a random crop of the
    original size per image, and flip half of the images horizontally. x: [N, C, H, W]; a new
    tensor is returned (x is not modified)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a [N, C, H, W] tensor, got {getattr(x, 'shape', type(x).__name__)}")
    return CropFlip.draw(x.shape[0], padding=padding, flip=flip, generator=generator)(x)
