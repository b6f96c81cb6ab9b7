"""The image data sets users hold: a folder of images (one subfolder per class, torchvision's
class order) and a tensor file (``.pt`` of ``{"x", "y"}`` loaded with ``weights_only``, or
``.npz`` without pickles). Images read with Pillow into [0, 1]; a bad file is one error naming it."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class ImageFolder(Dataset):
    """``root/CLASS/IMAGE``: samples ``(x float [C, H, W] in [0, 1], class index)``, classes in sorted
    order (torchvision's), read on access (a large folder streams through a DataLoader)."""

    def __init__(self, root: str | os.PathLike):
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise ValueError(f"--data-dir {root!r} is not a folder (imagefolder: one subfolder per class)")
        self.classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
        self.files = [(os.path.join(root, c, f), k) for k, c in enumerate(self.classes)
                      for f in sorted(os.listdir(os.path.join(root, c))) if f.lower().endswith(IMAGE_SUFFIXES)]
        if not self.files:
            raise ValueError(f"--data-dir {root!r}: no images ({', '.join(IMAGE_SUFFIXES)}) in class subfolders")
        self.shape = self._read(self.files[0][0]).shape

    @staticmethod
    def _read(path: str) -> torch.Tensor:
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.load()
                array = np.asarray(image.convert("L" if image.mode in ("1", "L", "I;16", "I") else "RGB"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable image ({exc})") from None
        x = torch.from_numpy(array.copy()).float() / 255
        return x[None] if x.dim() == 2 else x.permute(2, 0, 1)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __getitem__(self, i: int):
        path, label = self.files[i]
        x = self._read(path)
        if x.shape != self.shape:
            raise ValueError(f"{path}: image of shape {list(x.shape)}, but the folder's first is {list(self.shape)}; "
                             "resize the images to one size")
        return x, label


def load_tensors(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x float [N, C, H, W] in [0, 1], y int64 [N])`` from a ``.pt`` (``{"x", "y"}``, loaded with
    ``weights_only``) or ``.npz`` (no pickles) file; uint8 images are scaled by 1/255."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"--data-dir {path!r}: not a file (tensors: a .pt or .npz of x and y)")
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                data = {k: torch.from_numpy(f[k]) for k in ("x", "y") if k in f}
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (a crafted or corrupt file: one line naming it)
        raise ValueError(f"{path}: not a readable tensor file ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), torch.Tensor) for k in ("x", "y")):
        raise ValueError(f"{path}: expected a dict with tensors 'x' [N, C, H, W] and 'y' [N]")
    x, y = data["x"], data["y"]
    if x.dtype == torch.uint8:
        x = x.float() / 255
    if x.dim() != 4 or y.shape != (x.shape[0],) or not x.is_floating_point():
        raise ValueError(f"{path}: expected x [N, C, H, W] (uint8 or float) and y [N], got {list(x.shape)} "
                         f"{x.dtype} and {list(y.shape)}")
    return x.float(), y.long()
