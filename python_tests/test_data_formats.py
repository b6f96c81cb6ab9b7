"""``robustkernels.data.load``: every data set by name as a Dataset - CIFAR-100 (its python
pickles, read by the restricted unpickler), SVHN (its .mat files), the user's image folders and
tensor files with their train / test splits - built here in a temporary folder from the real
CIFAR-10 and MNIST images; nothing is downloaded. Bad files are one error naming the file."""

import os
import pickle

import numpy as np
import pytest
import torch

from robustkernels.data import DATASETS, load, load_cifar10, load_mnist, take


@pytest.fixture(scope="module")
def cifar(shared_data):
    x, y = load_cifar10(shared_data / "cifar-10-batches-py", train=False)
    return x[:120], y[:120]


def _write_cifar100(root, x, y):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    fine = (y * 10 + torch.arange(len(y)) % 10).numpy().tolist()  # labels 0..99
    data = (x * 255).round().to(torch.uint8).reshape(len(x), -1).numpy()
    for name, part in (("train", slice(0, 80)), ("test", slice(80, None))):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data[part], b"fine_labels": fine[part], b"coarse_labels": [0] * len(data[part])}, f,
                        protocol=2)
    return fine


def test_cifar100_from_its_python_files(tmp_path, cifar):
    x, y = cifar
    fine = _write_cifar100(tmp_path, x, y)
    train, test = load("cifar100", tmp_path, train=True), load("cifar100", tmp_path)
    assert (len(train), len(test), train.num_classes) == (80, 40, 100)
    assert torch.equal(test[0][0], x[80]) and int(test[0][1]) == fine[80]
    assert test.tensors[1].max() <= 99
    with open(tmp_path / "cifar-100-python" / "test", "wb") as f:
        pickle.dump(os.system, f)  # a crafted pickle: refused, never run
    with pytest.raises(ValueError, match="refusing to load|not a CIFAR"):
        load("cifar100", tmp_path)
    with pytest.raises(FileNotFoundError, match="CIFAR-100 file 'train' not found"):
        load("cifar100", tmp_path / "nowhere", train=True)


def test_svhn_from_its_mat_files(tmp_path, cifar):
    from scipy.io import savemat

    x, y = cifar
    images = (x * 255).round().to(torch.uint8).permute(2, 3, 1, 0).numpy()  # [32, 32, 3, N]
    labels = np.where(y.numpy() == 0, 10, y.numpy()).reshape(-1, 1).astype(np.uint8)  # SVHN: 10 is the digit 0
    savemat(tmp_path / "train_32x32.mat", {"X": images[..., :100], "y": labels[:100]})
    savemat(tmp_path / "test_32x32.mat", {"X": images[..., 100:], "y": labels[100:]})
    train, test = load("svhn", tmp_path, train=True), load("svhn", tmp_path)
    assert (len(train), len(test)) == (100, 20)
    assert torch.equal(train.tensors[0], x[:100]) and torch.equal(train.tensors[1], y[:100])
    assert int(train.tensors[1].min()) == 0
    savemat(tmp_path / "test_32x32.mat", {"X": images[:16], "y": labels})
    with pytest.raises(ValueError, match=r"test_32x32.mat: expected X uint8 \[32, 32, 3, N\]"):
        load("svhn", tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, but cut short")
    with pytest.raises(ValueError, match="test_32x32.mat: not a readable MATLAB file"):
        load("svhn", tmp_path)


def test_user_folders_and_tensor_files_with_their_splits(tmp_path, shared_data):
    from PIL import Image

    x, y = load_mnist(shared_data / "mnist", train=False)
    x, y = x[:40], y[:40]
    for split, part in (("train", slice(0, 30)), ("val", slice(30, 40))):
        for i in range(part.start, part.stop):
            folder = tmp_path / "imgs" / split / f"digit_{int(y[i])}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((x[i, 0].numpy() * 255).round().astype("uint8")).save(folder / f"{i}.png")
    train, val = load("imagefolder", tmp_path / "imgs", train=True), load("imagefolder", tmp_path / "imgs")
    assert (len(train), len(val)) == (30, 10)
    classes = train.classes
    assert torch.equal(train[0][0], x[int(sorted(os.listdir(tmp_path / "imgs" / "train" / classes[0]))[0][:-4])])
    assert load("imagefolder", tmp_path / "imgs" / "val").num_classes == len(os.listdir(tmp_path / "imgs" / "val"))
    with pytest.raises(ValueError, match="the training split needs a folder named train"):
        load("imagefolder", tmp_path / "imgs" / "val", train=True)
    (tmp_path / "t").mkdir()
    torch.save({"x": x[:30], "y": y[:30]}, tmp_path / "t" / "train.pt")
    np.savez(tmp_path / "t" / "test.npz", x=(x[30:].numpy() * 255).round().astype("uint8"), y=y[30:].numpy())
    train, test = load("tensors", tmp_path / "t", train=True), load("tensors", tmp_path / "t")
    assert torch.equal(train.tensors[0], x[:30]) and torch.equal(test.tensors[0], x[30:])
    assert torch.equal(load("tensors", tmp_path / "t" / "train.pt").tensors[1], y[:30])  # a file: the test split
    with pytest.raises(ValueError, match="the training split needs a file named train.pt or train.npz"):
        load("tensors", tmp_path / "t" / "train.pt", train=True)
    with pytest.raises(ValueError, match="dataset must be one of"):
        load("imagenet", tmp_path)
    with pytest.raises(ValueError, match="give root"):
        load("mnist")


def test_take_slices_tensors_and_keeps_datasets_lazy(shared_data):
    test = load("mnist", shared_data / "mnist")
    x, y = take(test, 5, 9)
    assert torch.equal(x, test.tensors[0][5:9]) and len(y) == 4
    folder_like = torch.utils.data.Subset(test, range(100))
    part = take(folder_like, -10)
    assert isinstance(part, torch.utils.data.Subset) and len(part) == 10 and torch.equal(part[0][0], test[90][0])
    assert set(DATASETS) == {"digits", "mnist", "cifar10", "cifar100", "svhn"}
