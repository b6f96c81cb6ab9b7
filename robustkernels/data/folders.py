"""The image data sets users hold: a folder of images (one subfolder per class, torchvision's
class order) and a tensor file (``.pt`` of ``{"x", "y"}`` loaded with ``weights_only``, or
``.npz`` without pickles). Images read with Pillow into [0, 1] by their bit depth
(:mod:`robustkernels.data.images`); a bad file is one error naming it."""

from __future__ import annotations

import os
import warnings
from collections import Counter

import numpy as np
import torch
from torch.utils.data import Dataset

from .images import image_suffixes, is_grey, read_header, read_image
from .labels import check_labels_within, whole_labels

_EXAMPLES = 3  # file names quoted per kind of skipped file


class ImageFolder(Dataset):
    """``root/CLASS/.../IMAGE``: samples ``(x float [C, H, W] in [0, 1], class index)``, as
    torchvision's ImageFolder finds them: classes are the sub-folders of ``root`` in sorted order,
    a class's images are every file under its folder (nested folders too) in a format Pillow reads.

    - Hidden files and folders (names starting with '.', e.g. ``.ipynb_checkpoints``) are ignored.
    - Other files (not images Pillow reads, files outside the class folders) are skipped, listed
      in one warning; a class folder with no image is an error naming it.
    - Every image's header is read here (a corrupt file is an error naming it, before any run) and
      every image must have the first one's size. The folder is grey (one channel) when all its
      images are grey; if any is colour, every image is read as RGB and a grey one is replicated
      into three equal channels (torchvision's loader converts every image to RGB), with a warning.
    - Pixels are scaled by bit depth (:mod:`robustkernels.data.images`; alpha is dropped) and read
      on access: a large folder streams through a DataLoader.
    """

    def __init__(self, root: str | os.PathLike):
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise ValueError(f"--data-dir {root!r} is not a folder (imagefolder: one subfolder per class)")
        self.classes = sorted(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith("."))
        if not self.classes:
            raise ValueError(f"--data-dir {root!r}: no images: no class subfolders (imagefolder: one subfolder "
                             "per class)")
        skipped = [(e.path, "outside the class folders") for e in os.scandir(root)
                   if not e.is_dir() and not e.name.startswith(".")]
        self.files = []
        for k, name in enumerate(self.classes):
            images, others = _class_files(root, name)
            self.files += [(f, k) for f in images]
            skipped += [(f, "not in an image format Pillow reads") for f in others]
        self.shape, notes = _folder_shape([f for f, _ in self.files])
        notes = [_skipped_note(root, skipped)] * bool(skipped) + notes
        if notes:
            warnings.warn(f"imagefolder {root!r}: " + "; ".join(notes), UserWarning, stacklevel=2)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __getitem__(self, i: int):
        path, label = self.files[i]
        x = read_image(path, self.shape[0])
        if x.shape != self.shape:  # the header read at construction said otherwise
            raise ValueError(f"{path}: image of shape {list(x.shape)}, but the folder's first is {list(self.shape)}; "
                             "resize the images to one size")
        return x, label


def _class_files(root: str, name: str) -> tuple[list[str], list[str]]:
    """(the images, the other files) under the class folder ``root/name``; a class of no image is
    an error naming it."""
    found = _files_under(os.path.join(root, name))
    images = [f for f in found if os.path.splitext(f)[1].lower() in image_suffixes()]
    if not images:
        raise ValueError(f"--data-dir {root!r}: class folder {name!r} holds no images (in any format Pillow "
                         f"reads; {len(found)} other files); remove the folder or add its images")
    return images, [f for f in found if os.path.splitext(f)[1].lower() not in image_suffixes()]


def _files_under(folder: str) -> list[str]:
    """Every file under ``folder`` but hidden ones, in sub-folders too (symbolic links followed,
    each folder once), in torchvision's order: by folder path, then by name."""
    found, seen = [], set()
    for path, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(path)
        if real in seen:  # a link back to a folder already walked: a loop, or the same images twice
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = [f for f in folders if not f.startswith(".")]
        found.append((path, sorted(n for n in names if not n.startswith("."))))
    return [os.path.join(path, n) for path, names in sorted(found) for n in names]


def _folder_shape(files: list[str]) -> tuple[tuple[int, int, int], list[str]]:
    """``(C, H, W)`` of the folder's images from their headers (C = 3 if any is colour), and a note
    when grey images are replicated to RGB. Images of another size than the first are an error."""
    headers = [read_header(f) for f in files]
    size = headers[0][1]
    for path, (_, other) in zip(files, headers):
        if other != size:
            raise ValueError(f"{path}: image of {other[0]}x{other[1]} pixels, but {files[0]} is "
                             f"{size[0]}x{size[1]}; resize the images to one size")
    colour = [(path, mode) for path, (mode, _) in zip(files, headers) if not is_grey(mode)]
    notes = []
    if colour and len(colour) < len(files):
        notes.append(f"{len(files) - len(colour)} grey images are read as RGB (three equal channels) as "
                     f"{len(colour)} are colour (e.g. {colour[0][0]}, mode {colour[0][1]})")
    return (3 if colour else 1, *size), notes


def _skipped_note(root: str, skipped: list[tuple[str, str]]) -> str:
    """One line for the files skipped: how many, why, the suffixes, a few examples."""
    parts = []
    for reason in dict.fromkeys(why for _, why in skipped):
        paths = [os.path.relpath(p, root) for p, why in skipped if why == reason]
        suffixes = Counter(os.path.splitext(p)[1].lower() or "no suffix" for p in paths)
        kinds = ", ".join(f"{s} x{n}" for s, n in suffixes.most_common())
        parts.append(f"{len(paths)} {reason} ({kinds}; e.g. {', '.join(paths[:_EXAMPLES])})")
    return f"skipped {len(skipped)} files: " + "; ".join(parts)


def load_tensors(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x float [N, C, H, W] in [0, 1], y int64 [N])`` from a ``.pt`` (``{"x", "y"}``, loaded with
    ``weights_only``) or ``.npz`` (no pickles) file; uint8 images are scaled by 1/255. Labels are
    class indices >= 0: integers, or floats that are whole numbers (a fractional or NaN label is an
    error naming the file, never truncated); a file of no samples is an error."""
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
    if len(y) == 0:
        raise ValueError(f"{path}: the file holds no samples (x of shape {list(x.shape)})")
    y = whole_labels(path, y)
    check_labels_within(path, y, 0)
    return x.float(), y
