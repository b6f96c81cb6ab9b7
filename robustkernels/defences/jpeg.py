"""JPEG compression at a quality, through a real codec (Pillow), as a front-end (Dziugaite et al.
2016; Guo et al. 2018). Not differentiable: the output carries no gradient (use BPDA)."""

from __future__ import annotations

import io

import numpy as np
import torch

from .base import Preprocessing


class JPEGCompression(Preprocessing):
    """Encode each image as JPEG at ``quality`` (1..95) and decode it; 1 or 3 channels."""

    differentiable = False

    def __init__(self, quality: int = 75):
        super().__init__()
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
            raise ValueError(f"quality must be an int in 1..95, got {quality!r}")
        self.quality = quality

    def transform(self, x):
        from PIL import Image

        if x.shape[1] not in (1, 3):
            raise ValueError(f"JPEGCompression takes 1 or 3 channels, got {x.shape[1]}")
        pixels = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for image in pixels:
            buffer = io.BytesIO()
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "JPEG",
                                                                                   quality=self.quality)
            decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.uint8)
            out.append(decoded.reshape(image.shape))
        result = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.dtype) / 255
        return result.to(x.device).contiguous()
