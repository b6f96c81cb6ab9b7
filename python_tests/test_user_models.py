"""Bring your own model to the command line: ``eval --model PKG.MODULE:FACTORY --weights FILE``
imports the user's factory from the current directory, loads the weights safely (plain, nested
or DDP-prefixed state_dicts; a crafted file runs nothing) and evaluates it, with ``--normalization``;
every mistake is one line naming the option."""

import os
import pickle

import numpy as np
import pytest
import torch

from robustkernels.cli import main
from robustkernels.models import load_weights, model_from_import

MODULE = '''
import torch.nn as nn

def net(width=16, classes=10):
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(width * 64, classes))
'''


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    (tmp_path / "mymodels_rk.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def _train_and_save(user_dir, **kwargs):
    from robustkernels.data import load_digits
    from robustkernels.train import fit, make_method

    torch.manual_seed(0)
    model = model_from_import("mymodels_rk:net", kwargs)
    x, y, _, _ = load_digits()
    fit(model, make_method("standard"), (x, y), epochs=3, batch_size=32, lr=3e-3, optimizer="adam", progress=False)
    return model


def test_eval_of_a_users_model_from_its_import_path(user_dir, capsys):
    model = _train_and_save(user_dir, width=8)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, user_dir / "net.pt")
    code = main(["eval", "--model", "mymodels_rk:net", "--model-args", '{"width": 8}', "--weights", "net.pt",
                 "--dataset", "digits", "--eps", "0.1", "--samples", "60", "--attacks", "fgsm,pgd", "--no-checks",
                 "--no-progress", "--suite", "autoattack", "--out", "report"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "mymodels_rk:net" in out.out and "AutoAttack robust accuracy" in out.out
    assert (user_dir / "report" / "report.json").exists()
    with torch.no_grad():  # the weights were loaded: the clean accuracy is the trained model's
        from robustkernels.data import load_digits
        _, _, x, y = load_digits()
        acc = (model.eval()(x[:60]).argmax(1) == y[:60]).float().mean()
    assert f"{100 * acc:.1f}%" in out.out


def test_normalization_and_bad_models_are_one_line(user_dir, capsys):
    model = _train_and_save(user_dir)
    torch.save(model.state_dict(), "plain.pt")
    base = ["eval", "--dataset", "digits", "--samples", "20", "--attacks", "fgsm", "--no-checks", "--no-progress"]
    assert main(base + ["--model", "mymodels_rk:net", "--weights", "plain.pt", "--normalization", "0.5,0.25"]) == 0
    assert "Worst case" in capsys.readouterr().out

    def error(argv):
        assert main(base + argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        return err

    assert "expected PKG.MODULE:FACTORY" in error(["--model", "mymodels_rk.net", "--weights", "plain.pt"])
    assert "cannot import 'nowhere_rk'" in error(["--model", "nowhere_rk:net", "--weights", "plain.pt"])
    assert "has no callable 'resnet'" in error(["--model", "mymodels_rk:resnet", "--weights", "plain.pt"])
    assert "--model needs --weights" in error(["--model", "mymodels_rk:net"])
    message = error(["--model", "mymodels_rk:net", "--model-args", '{"width": 4}', "--weights", "plain.pt"])
    assert "does not fit the model" in message or "size mismatch" in message
    torch.save({"extra.weight": torch.zeros(1), **model.state_dict()}, "extra.pt")
    assert "unexpected ['extra.weight']" in error(["--model", "mymodels_rk:net", "--weights", "extra.pt"])
    with open("evil.pt", "wb") as f:
        pickle.dump(os.system, f)  # a crafted pickle: weights_only refuses to run it
    assert "is a pickled object (a whole model?) or a damaged file, not a weights file: accepted is a state_dict" \
        in error(["--model", "mymodels_rk:net", "--weights", "evil.pt"])
    np.savez("w.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    torch.jit.save(torch.jit.script(model), "scripted.pt")
    torch.save(model, "whole.pt")
    for name, kind in (("w.npz", "a NumPy .npz archive"), ("scripted.pt", "a TorchScript archive"),
                       ("whole.pt", "a torch.save archive holding more than tensors")):
        message = error(["--model", "mymodels_rk:net", "--weights", name])
        assert f"--weights '{name}' is {kind}" in message and "\x1b" not in message, message
    message = error(["--model", "mymodels_rk:net", "--model-args", '{"width": "8"}', "--weights", "plain.pt"])
    assert "net(width='8') failed with TypeError" in message and '"8" is a string' in message
    for bad in ("nan,1", "1e400,1", "0.5,inf", "0.5,0"):
        assert f"--normalization {bad!r}: MEAN and STD need as many values, finite, STD > 0" in error(
            ["--model", "mymodels_rk:net", "--weights", "plain.pt", "--normalization", bad])
    assert "--normalization 'nope'" in error(["--model", "mymodels_rk:net", "--weights", "plain.pt",
                                               "--normalization", "nope"])
    assert "give --checkpoint or --weights, not both" in error(["--model", "mymodels_rk:net", "--weights", "plain.pt",
                                                            "--checkpoint", "c.pt"])
    assert "give --checkpoint" in error([])


def test_load_weights_strips_ddp_prefixes_and_lists_missing_keys(user_dir):
    model = model_from_import("mymodels_rk:net")
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, "ddp.pt")
    other = load_weights(model_from_import("mymodels_rk:net"), "ddp.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    torch.save({k: v for k, v in model.state_dict().items() if not k.startswith("3.")}, "partial.pt")
    with pytest.raises(ValueError, match=r"missing \['3.bias', '3.weight'\]"):
        load_weights(model_from_import("mymodels_rk:net"), "partial.pt")
    with pytest.raises(TypeError, match="returned int, not an nn.Module"):
        (user_dir / "bad_rk.py").write_text("def f():\n    return 3\n")
        model_from_import("bad_rk:f")


def _image_folder(root, x, y, broken=None):
    from PIL import Image

    for i, (image, label) in enumerate(zip(x, y)):
        folder = root / f"class_{int(label)}"
        folder.mkdir(parents=True, exist_ok=True)
        array = (image[0].numpy() * 255).round().astype("uint8")
        Image.fromarray(array).save(folder / f"{i:04d}.png")
    if broken is not None:
        (root / f"class_{int(y[0])}" / broken).write_bytes(b"\x89PNG\r\n\x1a\n-not-an-image")


def test_the_end_to_end_path_with_an_image_folder_and_a_tensor_file(user_dir, capsys):
    """A user module, weights saved from it, an image folder: eval prints the report and writes it;
    the same images as a tensor file give the same figures; bad folders are one line naming the file."""
    import numpy as np

    from robustkernels.data import load_digits

    model = _train_and_save(user_dir)
    torch.save(model.state_dict(), "net.pt")
    _, _, x, y = load_digits()
    x, y = x[:30], y[:30]
    _image_folder(user_dir / "imgs", x, y)
    base = ["eval", "--model", "mymodels_rk:net", "--weights", "net.pt", "--eps", "0.1", "--attacks", "fgsm,pgd",
            "--no-checks", "--no-progress"]
    assert main(base + ["--dataset", "imagefolder", "--data-dir", "imgs", "--out", "rep"]) == 0
    from_folder = capsys.readouterr().out
    assert (user_dir / "rep" / "report.md").exists() and "Worst case" in from_folder
    # the folder's class order is sorted names: class_0 ... class_9 are the digits' own labels here
    np.savez("imgs.npz", x=(x.numpy() * 255).round().astype("uint8"), y=y.numpy())
    assert main(base + ["--dataset", "tensors", "--data-dir", "imgs.npz"]) == 0
    def worst(text):  # the worst-case figure and the robustness gap (the timing differs between runs)
        return text.split("Worst case")[1].split("attacks cost")[0]

    assert worst(from_folder) == worst(capsys.readouterr().out)
    (user_dir / "empty" / "a").mkdir(parents=True)
    for argv, message in ((["--dataset", "imagefolder", "--data-dir", "empty"], "no images"),
                          (["--dataset", "imagefolder"], "reads --data-dir"),
                          (["--dataset", "tensors", "--data-dir", "net.pt"], "expected a dict with tensors 'x'")):
        assert main(base + argv) == 2 and message in capsys.readouterr().err
    _image_folder(user_dir / "bad", x[:4], y[:4], broken="9999.png")
    assert main(base + ["--dataset", "imagefolder", "--data-dir", "bad"]) == 2
    assert "9999.png: not a readable image" in capsys.readouterr().err


def _digits_files(root):
    """The digits as an image folder (train/ and val/) and as tensor files (train.pt, test.npz)."""
    import numpy as np

    from robustkernels.data import load_digits

    x, y, xt, yt = load_digits()
    _image_folder(root / "imgs" / "train", x[:240], y[:240])
    _image_folder(root / "imgs" / "val", xt[:60], yt[:60])
    (root / "t").mkdir()
    torch.save({"x": x[:240], "y": y[:240]}, root / "t" / "train.pt")
    np.savez(root / "t" / "test.npz", x=(xt[:60].numpy() * 255).round().astype("uint8"), y=yt[:60].numpy())
    return xt[:60], yt[:60]


def test_train_a_users_model_on_its_image_folder_and_eval_reads_it_back(user_dir, capsys):
    """train --model PKG.MODULE:FACTORY on an image folder records the import path and arguments,
    never the pickled model; eval rebuilds it only when given the same --model, with the
    normalisation it was trained behind."""
    from robustkernels.train.checkpoint import load

    xt, yt = _digits_files(user_dir)
    code = main(["train", "--model", "mymodels_rk:net", "--model-args", '{"width": 8}', "--dataset", "imagefolder",
                 "--data-dir", "imgs", "--eps", "0.1", "--method", "pgd-at", "--epochs", "3", "--batch-size", "32",
                 "--optimizer", "adam", "--lr", "3e-3", "--val-samples", "40", "--normalization", "0.5,0.5",
                 "--out", "run", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    state = load(user_dir / "run" / "checkpoint.pt")  # weights_only: tensors and plain values
    meta = state["meta"]
    assert (meta["model"], meta["model_args"], meta["source"]) == ("mymodels_rk:net", {"width": 8}, "import")
    assert meta["normalization"] == [[0.5], [0.5]] and meta["dataset"] == "imagefolder"
    base = ["eval", "--checkpoint", "run/checkpoint.pt", "--dataset", "imagefolder", "--data-dir", "imgs",
            "--attacks", "fgsm", "--no-checks", "--no-progress"]
    assert main(base) == 2 and "pass --model mymodels_rk:net to import it" in capsys.readouterr().err
    assert main(base + ["--model", "mymodels_rk:other"]) == 2
    assert "pass --model mymodels_rk:net" in capsys.readouterr().err
    assert main(base + ["--model", "mymodels_rk:net"]) == 0
    out = capsys.readouterr().out
    model = model_from_import("mymodels_rk:net", {"width": 8})
    model.load_state_dict(state["model"])
    with torch.no_grad():  # the image folder's val/ split, behind the recorded normalisation
        acc = (model.eval()((xt - 0.5) / 0.5).argmax(1) == yt).float().mean()
    assert acc > 0.5 and f"| clean | {100 * acc:.1f}%" in out
    assert "normalised by mean [0.5], std [0.5]" in out


def test_compare_and_train_on_a_users_model_and_tensor_files(user_dir, capsys):
    """compare --model PKG.MODULE:FACTORY on tensor files trains each method on the user's model;
    train with a built-in model reads the same files; a missing eps for the user's data is one line."""
    import json

    _digits_files(user_dir)
    code = main(["compare", "--dataset", "tensors", "--data-dir", "t", "--model", "mymodels_rk:net", "--eps", "0.1",
                 "--methods", "pgd-at,fgsm-rs", "--epochs", "2", "--batch-size", "32", "--lr", "0.05",
                 "--eval-samples", "30", "--val-samples", "30", "--out", "cmp", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((user_dir / "cmp" / "compare.json").read_text())
    assert [r["name"] for r in result["rows"]] == ["pgd-at", "fgsm-rs"]
    assert "mymodels_rk:net on tensors (240 training images)" in result["title"]
    assert all(r["clean_accuracy"] > 0.3 for r in result["rows"])
    assert main(["train", "--model", "cnn", "--dataset", "tensors", "--data-dir", "t", "--eps", "0.1", "--epochs",
                 "1", "--out", "run2", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "--model", "cnn", "--dataset", "tensors", "--data-dir", "t", "--out", "run3"]) == 2
    assert "give --eps" in capsys.readouterr().err
    assert main(["train", "--model", "cnn", "--model-args", '{"a": 1}', "--dataset", "digits", "--out", "r4"]) == 2
    assert "--model-args is for --model PKG.MODULE:FACTORY" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval", "compare"])
def test_help_shows_the_model_and_data_options(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--model-args", "--normalization", "imagefolder", "cifar100", "svhn", "tensors"):
        assert option in text
    assert "PKG.MODULE:FACTORY" in text and "(default: {})" in text


TIMM_LIKE = '''
import torch.nn as nn


class TinyNet(nn.Module):
    """timm's conventions: forward_features / forward_head, num_classes, pretrained_cfg."""

    def __init__(self, num_classes=1000, in_chans=3, width=8):
        super().__init__()
        self.num_classes, self.pretrained_cfg = num_classes, {"mean": (0.5,), "std": (0.5,)}
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.BatchNorm2d(width), nn.GELU())
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x):
        return self.stem(x)

    def forward_head(self, x, pre_logits=False):
        x = x.mean((2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def create_model(model_name, pretrained=False, num_classes=1000, in_chans=3, **kwargs):
    if pretrained:
        raise ValueError("no downloads here")
    return {"tinynet": TinyNet}[model_name](num_classes=num_classes, in_chans=in_chans, **kwargs)
'''


def test_a_timm_style_factory_trains_and_evaluates_from_the_command_line(user_dir, capsys):
    """``--model timm:create_model --model-args '{"model_name": ...}'`` is how a timm model comes in;
    timm needs torchvision, whose wheels for torch 2.13 here are CUDA builds that do not load
    (libc10_cuda.so), so a factory with timm's signature and module conventions stands in."""
    (user_dir / "timm_like_rk.py").write_text(TIMM_LIKE)
    spec = ["--model", "timm_like_rk:create_model", "--model-args",
            '{"model_name": "tinynet", "num_classes": 10, "in_chans": 1}']
    assert main(["train", *spec, "--dataset", "digits", "--method", "pgd-at", "--epochs", "2", "--no-progress",
                 "--out", "run"]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", "run/checkpoint.pt", *spec, "--samples", "40", "--attacks", "fgsm,pgd",
                 "--no-checks", "--no-progress"]) == 0
    assert "Worst case" in capsys.readouterr().out
