"""One image file as a float tensor in [0, 1], scaled by its bit depth (Pillow reads it).

Pillow's modes and what they give:

- 8-bit grey ``L``, 1-bit ``1`` and grey with alpha ``LA``: one channel, value / 255 (``1`` gives
  0 or 1; alpha is dropped);
- 16-bit grey ``I;16`` / ``I;16B`` / ``I;16L`` and 32-bit integer ``I``: one channel, value / 65535
  (an ``I`` value outside 0..65535 is an error naming the file);
- 32-bit float ``F``: one channel, the values as they are, which must lie in [0, 1] (otherwise an
  error naming the file: we do not guess the scale);
- every other mode - ``RGB``, ``RGBA``, palette ``P`` / ``PA``, ``CMYK``, ``YCbCr``... - through
  Pillow's ``convert("RGB")``: three channels, value / 255. Alpha is dropped, not composited, as
  torchvision's ImageFolder (whose loader calls ``convert("RGB")``) does; a palette image is colour
  even when its palette is grey.

A multi-frame file (animated GIF, multi-page TIFF) gives its first frame."""

from __future__ import annotations

import functools

import numpy as np
import torch

_EIGHT_BIT_GREY = frozenset({"1", "L", "LA"})
# EPS is drawn by running Ghostscript on the file, MPEG is identified but never decoded: neither
# is read (their files are skipped like any other non-image).
_NOT_READ = frozenset({"EPS", "MPEG"})


def is_grey(mode: str) -> bool:
    """Whether a Pillow mode gives one channel (else three)."""
    return mode in _EIGHT_BIT_GREY or mode in ("I", "F") or mode.startswith("I;16")


@functools.lru_cache(maxsize=1)
def image_suffixes() -> frozenset[str]:
    """The file name suffixes (lower case, with the dot) of the formats Pillow decodes here:
    its registered extensions less the formats it only identifies (stubs that need a handler,
    MPEG) and EPS (which it renders by running Ghostscript)."""
    from PIL import Image, ImageFile

    def decoded(fmt: str) -> bool:
        factory = Image.OPEN.get(fmt, (None,))[0]
        if factory is None or fmt in _NOT_READ:
            return False
        return not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))

    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if decoded(fmt))


def _opened(path: str):
    """The file opened by Pillow (header read, pixels not yet decoded); a file Pillow cannot open is a
    ValueError naming it."""
    from PIL import Image

    try:
        return Image.open(path)
    except Exception as exc:  # noqa: BLE001 (a crafted or corrupt file: one line naming it)
        raise ValueError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


def read_header(path: str) -> tuple[str, tuple[int, int]]:
    """``(mode, (height, width))`` of an image file from its header, without decoding its pixels."""
    with _opened(path) as image:
        return image.mode, (image.height, image.width)


def _decoded(image) -> np.ndarray:
    """The pixels as Pillow decodes them: uint8 [H, W] or [H, W, 3], or the 16/32-bit integer or
    float [H, W] of the modes ``I;16*``, ``I`` and ``F`` (converting those to ``L`` would clip)."""
    if is_grey(image.mode) and image.mode not in _EIGHT_BIT_GREY:
        return np.asarray(image)
    return np.asarray(image.convert("L" if image.mode in _EIGHT_BIT_GREY else "RGB"))


def _scaled(array: np.ndarray, mode: str, path: str) -> np.ndarray:
    """float32 in [0, 1]: uint8 / 255, 16/32-bit integers / 65535, floats as they are."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    low, high = (array.min(), array.max()) if array.size else (0, 0)
    if array.dtype.kind == "f":
        if not (np.isfinite(array).all() and low >= 0 and high <= 1):
            raise ValueError(f"{path}: a 32-bit float image (mode {mode}) must hold values in [0, 1], found "
                             f"{low}..{high}; scale it to [0, 1] first")
        return array.astype(np.float32)
    if low < 0 or high > 65535:
        raise ValueError(f"{path}: a {mode} image is read as 16-bit and must hold values in 0..65535, found "
                         f"{low}..{high}")
    return array.astype(np.float32) / 65535


def read_image(path: str, channels: int) -> torch.Tensor:
    """The image in ``path`` as float32 ``[channels, H, W]`` in [0, 1] (see the module's scale per
    mode); a grey image asked for three channels is replicated (R = G = B). An unreadable file is
    a ValueError naming it."""
    with _opened(path) as image:
        try:
            image.load()
            mode, array = image.mode, _decoded(image)
        except Exception as exc:  # noqa: BLE001 (a crafted or truncated file: one line naming it)
            raise ValueError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
    x = torch.from_numpy(_scaled(array, mode, path))
    if x.dim() == 3:
        if channels != 3:
            raise ValueError(f"{path}: a colour image ({mode}) where the folder's images are grey")
        return x.permute(2, 0, 1)
    return x[None].expand(channels, -1, -1).contiguous() if channels != 1 else x[None]
