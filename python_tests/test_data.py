"""Datasets from their standard file formats (tiny files written here) and the augmentation."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from robustkernels.data import load_cifar10, load_digits, load_mnist, random_crop_flip, read_idx


def write_cifar(root, batches):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    written = {}
    for name, n in batches.items():
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
        written[name] = (data, labels)
    return written


def test_cifar10_python_batches(tmp_path):
    written = write_cifar(tmp_path, {**{f"data_batch_{i}": 3 for i in range(1, 6)}, "test_batch": 4})
    x, y = load_cifar10(tmp_path, train=True)
    assert x.shape == (15, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    data, labels = written["data_batch_2"]
    # image 0 of batch 2: channel-major RGB, row-major pixels
    assert torch.equal(x[3], torch.from_numpy(data[0].reshape(3, 32, 32)).float() / 255)
    assert y[3:6].tolist() == labels
    x_test, y_test = load_cifar10(tmp_path / "cifar-10-batches-py", train=False)
    assert x_test.shape == (4, 3, 32, 32) and 0 <= x_test.min() and x_test.max() <= 1


def test_cifar10_missing_batch_is_named(tmp_path):
    write_cifar(tmp_path, {"test_batch": 2})
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load_cifar10(tmp_path, train=True)


def write_idx(path, array, magic, compress=False):
    header = struct.pack(">II", magic, array.shape[0]) + b"".join(struct.pack(">I", d) for d in array.shape[1:])
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_mnist_idx_files(tmp_path, compress):
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, 2051, compress)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, 2049, compress)
    x, y = load_mnist(tmp_path, train=False)
    assert x.shape == (5, 1, 28, 28) and torch.equal(x[2, 0], torch.from_numpy(images[2]).float() / 255)
    assert y.tolist() == labels.tolist()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, train=True)


def test_idx_bad_files(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(struct.pack(">II", 1234, 1) + b"\x00")
    with pytest.raises(ValueError, match="not an IDX uint8 file"):
        read_idx(path)
    write_idx(path, np.zeros((3, 2, 2)), 2051)
    path.write_bytes(path.read_bytes()[:-1])  # truncated
    with pytest.raises(ValueError, match="header says"):
        read_idx(path)


def test_crop_flip_keeps_shape_and_content():
    x = torch.rand(64, 3, 8, 8)
    before = x.clone()
    out = random_crop_flip(x, padding=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(x, before)
    assert not torch.equal(out, x)
    # with no padding and no flip it is the identity
    assert torch.equal(random_crop_flip(x, padding=0, flip=False), x)
    # every output is a shifted window of the zero-padded image, possibly flipped
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(8):
        windows = [padded[i, :, a:a + 8, b:b + 8] for a in range(5) for b in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(2)) for w in windows)


def test_flip_rate_is_one_half():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(4000, 1, 1, 4)
    out = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(1))
    flipped = (out[:, 0, 0, 0] == 3).float().mean().item()
    assert abs(flipped - 0.5) < 5 * (0.25 / 4000) ** 0.5


def test_digits_split_is_fixed_and_disjoint():
    x_train, y_train, x_test, y_test = load_digits()
    assert x_train.shape[1:] == (1, 8, 8) and len(x_train) + len(x_test) == 1797
    assert 0 <= x_train.min() and x_train.max() <= 1
    again = load_digits()
    assert torch.equal(again[2], x_test) and torch.equal(again[3], y_test)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.5)


@pytest.mark.parametrize("bad, match", [(torch.rand(3, 8, 8), r"\[N, C, H, W\]"), ("images", r"\[N, C, H, W\]")])
def test_crop_flip_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        random_crop_flip(bad)
