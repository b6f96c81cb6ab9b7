"""Download CIFAR-10 / MNIST into ``data_dir`` in the standard layouts the loaders read (for
users with a network; tests point ``mirror`` at local ``file://`` folders instead)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request

from ..common import progress_bar

SOURCES = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/", {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}),
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }),
}


def _md5(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, path: str, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with progress_bar(total=total, unit="B", unit_scale=True, desc=os.path.basename(path), enabled=progress) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                bar.update(len(chunk))


def download(dataset: str, data_dir: str | os.PathLike, *, mirror: str | None = None, verify: bool = True,
             progress: bool = True) -> str:
    """Fetch ``dataset`` (``"cifar10"`` or ``"mnist"``) into ``data_dir`` unless already there;
    checks the published MD5 sums (``verify``) and unpacks CIFAR-10's archive. Returns ``data_dir``."""
    if dataset not in SOURCES:
        raise ValueError(f"dataset must be one of {tuple(SOURCES)}, got {dataset!r}")
    base, files = SOURCES[dataset]
    base = mirror if mirror is not None else base
    root = os.fspath(data_dir)
    os.makedirs(root, exist_ok=True)
    if dataset == "cifar10" and os.path.isfile(os.path.join(root, "cifar-10-batches-py", "test_batch")):
        return root
    for name, md5 in files.items():
        target = os.path.join(root, name)
        if os.path.isfile(target) and (not verify or _md5(target) == md5):
            continue
        fd, tmp = tempfile.mkstemp(prefix=".download-", dir=root)
        os.close(fd)
        try:
            _fetch(base.rstrip("/") + "/" + name, tmp, progress)
            if verify and _md5(tmp) != md5:
                raise ValueError(f"{name}: MD5 checksum mismatch (expected {md5}); the download is corrupt")
            shutil.move(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if name.endswith(".tar.gz"):
            with tarfile.open(target) as archive:
                archive.extractall(root, filter="data")
    return root
