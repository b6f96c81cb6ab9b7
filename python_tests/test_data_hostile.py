"""Data files that used to give silently wrong samples or an unclear error: image folders of every
Pillow mode and format, nested and hidden folders, grey and colour images mixed; fractional, NaN
and out-of-range labels in tensor files, CIFAR-100 and SVHN; an empty tensor file; a bad seed.
Every file is written here, in tmp_path."""

import os
import pickle
import warnings

import numpy as np
import pytest
import torch

from robustkernels.data import ImageFolder, load, load_cifar100, load_svhn, load_tensors

Image = pytest.importorskip("PIL.Image")

GREY8 = np.array([[0, 128], [255, 7]], dtype=np.uint8)
GREY16 = np.array([[0, 13107], [65535, 1]], dtype=np.uint16)  # 13107 / 65535 is 0.2
COLOUR = np.array([[[255, 0, 10], [0, 128, 0]], [[1, 2, 3], [250, 251, 252]]], dtype=np.uint8)
FLOATS = np.array([[0, 0.5], [1, 0.25]], dtype=np.float32)


def _by_255(array):
    return torch.from_numpy(array).float() / 255


def _by_65535(array):
    return torch.from_numpy(array.astype(np.int64)).float() / 65535


def _rgba():
    alpha = np.array([[0, 255], [17, 128]], dtype=np.uint8)[..., None]
    return Image.fromarray(np.concatenate([COLOUR, alpha], axis=2))


def _palette():
    image = Image.new("P", (2, 2))
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 10, 20, 30])
    image.putdata([0, 1, 2, 3])
    return image


def _grey_alpha():
    return Image.merge("LA", [Image.fromarray(GREY8), Image.fromarray(np.full_like(GREY8, 9))])


# mode: (image, file name, expected [C, H, W]); what Pillow reads back is checked to be that mode
MODES = {
    "L": (lambda: Image.fromarray(GREY8), "a.png", _by_255(GREY8)[None]),
    "1": (lambda: Image.fromarray(GREY8 > 100), "a.png", torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])),
    "LA": (_grey_alpha, "a.png", _by_255(GREY8)[None]),  # alpha dropped
    "RGB": (lambda: Image.fromarray(COLOUR), "a.png", _by_255(COLOUR).permute(2, 0, 1)),
    "RGBA": (_rgba, "a.png", _by_255(COLOUR).permute(2, 0, 1)),  # alpha dropped, as convert("RGB")
    "P": (_palette, "a.png", torch.tensor([[[0, 255], [0, 10]], [[0, 0], [255, 20]], [[0, 0], [0, 30]]]) / 255),
    "I;16": (lambda: Image.fromarray(GREY16), "a.png", _by_65535(GREY16)[None]),
    "I;16B": (lambda: Image.fromarray(GREY16.astype(">u2")), "a.tif", _by_65535(GREY16)[None]),
    "I": (lambda: Image.fromarray(GREY16.astype(np.int32)), "a.tif", _by_65535(GREY16)[None]),
    "F": (lambda: Image.fromarray(FLOATS), "a.tiff", torch.from_numpy(FLOATS)[None]),
}


def _folder(root, images):
    """``root/CLASS/NAME`` for each ``{"CLASS/NAME": PIL image}``."""
    for name, image in images.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    return root


def _read(root):
    """The folder and the messages of the warnings its reading gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = ImageFolder(root)
    return data, [str(w.message) for w in caught]


@pytest.mark.parametrize("mode", list(MODES))
def test_each_pillow_mode_is_scaled_by_its_bit_depth(tmp_path, mode):
    make, name, expected = MODES[mode]
    root = _folder(tmp_path, {f"cls/{name}": make()})
    with Image.open(root / "cls" / name) as check:
        assert check.mode == mode
    data, _ = _read(root)
    x, label = data[0]
    assert data.shape == tuple(expected.shape) and label == 0
    assert x.dtype == torch.float32 and torch.equal(x, expected.float())


@pytest.mark.parametrize("array, match", [(FLOATS * 2, r"mode F\) must hold values in \[0, 1\], found 0.0..2.0"),
                                          (np.array([[0, np.nan]], dtype=np.float32), "must hold values in"),
                                          (np.array([[0, 70000]], dtype=np.int32), "0..65535, found 0..70000")])
def test_values_beyond_the_bit_depth_are_refused_naming_the_file(tmp_path, array, match):
    root = _folder(tmp_path, {"cls/bad.tif": Image.fromarray(array)})
    data, _ = _read(root)
    with pytest.raises(ValueError, match=r"bad\.tif: .*" + match):
        data[0]


def test_every_format_pillow_reads_and_nested_folders_are_read(tmp_path):
    colour = Image.fromarray(COLOUR)
    root = _folder(tmp_path, {"cat/a.png": colour, "cat/b.tif": colour, "cat/c.webp": colour, "cat/d.gif": colour,
                              "cat/sub/deeper/e.bmp": colour, "dog/f.PNG": colour, "dog/.g.png": colour,
                              ".ipynb_checkpoints/h.png": colour, "dog/.ipynb_checkpoints/i.png": colour})
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "dog" / "figure.eps").write_text("%!PS-Adobe-3.0 EPSF-3.0\n")  # never handed to Ghostscript
    (root / "README.md").write_text("the data")
    data, messages = _read(root)
    assert data.classes == ["cat", "dog"]  # .ipynb_checkpoints is no class
    names = [os.path.relpath(path, root) for path, _ in data.files]
    assert names == ["cat/a.png", "cat/b.tif", "cat/c.webp", "cat/d.gif", "cat/sub/deeper/e.bmp", "dog/f.PNG"]
    assert [label for _, label in data.files] == [0, 0, 0, 0, 0, 1]
    assert len(messages) == 1  # one warning lists what was skipped and why
    assert "skipped 3 files: " in messages[0] and "cat/notes.txt" in messages[0]
    assert "2 not in an image format Pillow reads (.txt x1, .eps x1" in messages[0]
    assert "1 outside the class folders (.md x1; e.g. README.md)" in messages[0]
    assert torch.equal(data[4][0], _by_255(COLOUR).permute(2, 0, 1))  # the nested .bmp


def test_a_link_back_to_a_class_folder_is_walked_once(tmp_path):
    root = _folder(tmp_path, {"cat/a.png": Image.fromarray(GREY8), "dog/b.png": Image.fromarray(GREY8)})
    (root / "cat" / "loop").symlink_to(root / "cat", target_is_directory=True)
    data, _ = _read(root)
    assert [os.path.relpath(path, root) for path, _ in data.files] == ["cat/a.png", "dog/b.png"]


def test_a_class_folder_without_images_is_refused_by_name(tmp_path):
    root = _folder(tmp_path, {"cat/a.png": Image.fromarray(GREY8), "dog/.hidden.png": Image.fromarray(GREY8)})
    (root / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="class folder 'dog' holds no images"):
        ImageFolder(root)


def test_a_hidden_folder_is_not_a_class(tmp_path):
    grey = Image.fromarray(GREY8)
    root = _folder(tmp_path, {"cat/a.png": grey, "dog/b.png": grey, ".ipynb_checkpoints/a-checkpoint.png": grey})
    data, messages = _read(root)
    assert data.classes == ["cat", "dog"] and data.num_classes == 2 and len(data) == 2 and messages == []


def test_grey_and_colour_images_mixed_are_all_read_as_rgb(tmp_path):
    root = _folder(tmp_path, {"a/grey.png": Image.fromarray(GREY8), "b/colour.png": Image.fromarray(COLOUR),
                              "b/deep.png": Image.fromarray(GREY16)})
    data, messages = _read(root)
    assert data.shape == (3, 2, 2)
    assert torch.equal(data[0][0], _by_255(GREY8)[None].expand(3, 2, 2))  # replicated, not a size error
    assert torch.equal(data[1][0], _by_255(COLOUR).permute(2, 0, 1))
    assert torch.equal(data[2][0], _by_65535(GREY16)[None].expand(3, 2, 2))  # 16-bit kept, not clipped
    assert len(messages) == 1 and "2 grey images are read as RGB" in messages[0] and "colour.png" in messages[0]


def test_images_of_another_size_or_unreadable_are_refused_naming_the_file(tmp_path):
    root = _folder(tmp_path, {"a/x.png": Image.fromarray(GREY8), "b/y.png": Image.fromarray(np.zeros((3, 2), "uint8"))})
    with pytest.raises(ValueError, match=r"y\.png: image of 3x2 pixels, but .*x\.png is 2x2"):
        ImageFolder(root)
    (root / "b" / "y.png").write_bytes(b"\x89PNG\r\n\x1a\n-not-an-image")
    with pytest.raises(ValueError, match=r"y\.png: not a readable image"):
        ImageFolder(root)


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
@pytest.mark.parametrize("labels, shown", [([0.9, 1.0], "0.9"), ([1.0, 2.99], "2.99"), ([1.0, float("nan")], "nan")])
def test_fractional_and_nan_labels_in_tensor_files_are_refused(tmp_path, suffix, labels, shown):
    path = tmp_path / f"data{suffix}"
    x, y = torch.rand(2, 1, 2, 2), torch.tensor(labels)
    if suffix == ".pt":
        torch.save({"x": x, "y": y}, path)
    else:
        np.savez(path, x=x.numpy(), y=y.numpy())
    with pytest.raises(ValueError, match=rf"data{suffix}: labels must be whole class indices, found {shown} at"):
        load_tensors(path)


def test_whole_float_labels_are_class_indices_and_negative_ones_refused(tmp_path):
    x = torch.rand(3, 1, 2, 2)
    torch.save({"x": x, "y": torch.tensor([3.0, 0.0, 1.0])}, tmp_path / "test.pt")
    data = load("tensors", tmp_path)
    assert data.tensors[1].dtype == torch.int64 and data.tensors[1].tolist() == [3, 0, 1] and data.num_classes == 4
    torch.save({"x": x, "y": torch.tensor([3, -1, 1])}, tmp_path / "test.pt")
    with pytest.raises(ValueError, match=r"test\.pt: expected labels >= 0, found -1 at index 1"):
        load("tensors", tmp_path)


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_an_empty_tensor_file_is_refused_naming_it(tmp_path, suffix):
    path = tmp_path / f"test{suffix}"
    if suffix == ".pt":
        torch.save({"x": torch.zeros(0, 1, 2, 2), "y": torch.zeros(0, dtype=torch.int64)}, path)
    else:
        np.savez(path, x=np.zeros((0, 1, 2, 2), np.uint8), y=np.zeros(0, np.int64))
    with pytest.raises(ValueError, match=rf"test{suffix}: the file holds no samples"):
        load_tensors(path)
    with pytest.raises(ValueError, match="holds no samples"):
        load("tensors", tmp_path)


def _cifar100(root, labels):
    folder = root / "cifar-100-python"
    folder.mkdir(exist_ok=True)
    data = np.zeros((len(labels), 3072), np.uint8)
    with open(folder / "test", "wb") as f:
        pickle.dump({b"data": data, b"fine_labels": labels}, f, protocol=2)


@pytest.mark.parametrize("labels, match", [([0.9, 1], "labels must be whole class indices, found 0.9 at index 0"),
                                           ([1, 2.99], "labels must be whole class indices, found 2.99 at index 1"),
                                           ([1, float("nan")], "labels must be whole class indices, found nan"),
                                           ([5, 100], r"expected labels in 0..99, found 100 at index 1"),
                                           ([5, "cat"], "labels must be integer class indices")])
def test_cifar100_labels_that_are_no_class_are_refused_with_the_value(tmp_path, labels, match):
    _cifar100(tmp_path, labels)
    with pytest.raises(ValueError, match=r"test: " + match):
        load_cifar100(tmp_path, train=False)


def test_cifar100_whole_float_labels_are_read(tmp_path):
    _cifar100(tmp_path, [3.0, 99.0])
    assert load_cifar100(tmp_path, train=False)[1].tolist() == [3, 99]


@pytest.mark.parametrize("labels, match", [([1, 11], r"expected labels in 1..10, found 11 at index 1"),
                                           ([0, 3], r"expected labels in 1..10, found 0 at index 0"),
                                           ([1.5, 3], "labels must be whole class indices, found 1.5 at index 0")])
def test_svhn_bad_labels_are_shown_by_value(tmp_path, labels, match):
    from scipy.io import savemat

    images = np.zeros((32, 32, 3, 2), np.uint8)
    savemat(tmp_path / "test_32x32.mat", {"X": images, "y": np.array(labels, dtype=np.float64).reshape(-1, 1)})
    with pytest.raises(ValueError, match=r"test_32x32\.mat: " + match):
        load_svhn(tmp_path, train=False)


@pytest.mark.parametrize("seed", ["a", 1.5, True, None])
def test_a_seed_that_is_no_integer_is_a_type_error_naming_it(seed):
    with pytest.raises(TypeError, match="seed must be an int"):
        load("digits", seed=seed)
    assert len(load("digits", seed=np.int64(3))) > 0
