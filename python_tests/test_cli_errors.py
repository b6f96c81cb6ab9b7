"""Anything a user can get wrong on the command line is one line naming the option or file, exit
code 2, before any training starts; --help explains every option."""

import gzip
import json
import pickle
import struct

import numpy as np
import pytest
import torch

from robustkernels.cli import build_parser, main

from .test_data import write_cifar, write_idx


def _error(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _parser_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def mnist_dir(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 2051)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n), 2049)
    return folder


TRAIN = ["train", "--epochs", "1", "--no-progress"]


def test_bad_data_files_are_one_line(tmp_path, mnist_dir, capsys):
    out = str(tmp_path / "run")
    mnist = TRAIN + ["--dataset", "mnist", "--data-dir", str(mnist_dir), "--out", out]
    images = mnist_dir / "train-images-idx3-ubyte"
    images.unlink()
    (mnist_dir / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")  # a fake .gz
    assert "train-images-idx3-ubyte.gz: not a readable gzip file" in _error(mnist, capsys)
    good = gzip.compress(struct.pack(">IIII", 2051, 40, 28, 28) + bytes(40 * 784))
    (mnist_dir / "train-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])  # truncated
    assert "train-images-idx3-ubyte.gz" in _error(mnist, capsys)
    (mnist_dir / "train-images-idx3-ubyte.gz").unlink()
    images.write_bytes(struct.pack(">II", 2051, 40))  # header only
    assert "IDX header is cut short" in _error(mnist, capsys)
    write_cifar(tmp_path, {f"data_batch_{i}": 2 for i in range(1, 6)} | {"test_batch": 2})
    cifar = TRAIN + ["--dataset", "cifar10", "--data-dir", str(tmp_path), "--out", out]
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps({b"data": 1}))
    assert "data_batch_2: a CIFAR-10 batch must be a dict with b'data' and b'labels'" in _error(cifar, capsys)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"plain text")
    assert "data_batch_2: not a CIFAR-10 batch file" in _error(cifar, capsys)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_bad_paths_and_devices_fail_before_training(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    message = _error(TRAIN + ["--out", str(a_file)], capsys)
    assert "--out" in message and "is a file" in message
    (tmp_path / "run" / "checkpoint.pt").mkdir(parents=True)
    assert "checkpoint.pt' is a folder" in _error(TRAIN + ["--out", str(tmp_path / "run")], capsys)
    if not torch.cuda.is_available():
        assert "--device cuda: no CUDA device" in _error(TRAIN + ["--device", "cuda", "--out", str(tmp_path / "r")],
                                                          capsys)
    assert "--device must be cpu, cuda" in _error(TRAIN + ["--device", "tpu", "--out", str(tmp_path / "r")], capsys)
    assert "--force-resume needs --resume" in _error(TRAIN + ["--force-resume", "--out", str(tmp_path / "r")], capsys)
    assert "--seeds: the seeds of --protocol fastat's runs; without it, --seed" in _error(
        ["compare", "--seeds", "0,1", "--out", str(tmp_path / "c")], capsys)


@pytest.mark.parametrize("argv, message", [
    (["train", "--eps", "1e309"], "argument --eps: must be finite"),
    (["train", "--eps", "8/0"], "argument --eps: must be a number or a fraction"),
    (["compare", "--eps", "1e39"], "argument --eps: must be finite (at most 3.4e38"),
    (["train", "--weight-average", "1.5"], "argument --weight-average: must be < 1"),
    (["train", "--alpha", "-1"], "argument --alpha: must be >= 0"),
    (["train", "--lr", "0"], "argument --lr: must be > 0"),
    (["train", "--epochs", "0"], "argument --epochs: must be >= 1"),
    (["train", "--batch-size", "x"], "argument --batch-size: must be an integer"),
    (["eval", "--checkpoint", "c.pt", "--samples", "-5"], "argument --samples: must be >= 1"),
    (["eval", "--checkpoint", "c.pt", "--eot-iter", "0"], "argument --eot-iter: must be >= 1"),
])
def test_bad_numbers_are_refused_by_the_parser(argv, message, capsys):
    assert message in _parser_error(argv, capsys)


def test_bad_checkpoints_are_one_line(tmp_path, capsys):
    evaluate = ["eval", "--attacks", "fgsm", "--samples", "16", "--no-checks", "--no-progress", "--checkpoint"]
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert "empty.pt' is empty" in _error(evaluate + [str(empty)], capsys)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04" + bytes(64))
    assert "corrupt.pt' is not a readable torch checkpoint" in _error(evaluate + [str(corrupt)], capsys)
    assert "is a folder" in _error(evaluate + [str(tmp_path)], capsys)
    assert "does not exist" in _error(evaluate + [str(tmp_path / "missing.pt")], capsys)


def test_eval_on_a_dataset_of_another_image_size(tmp_path, mnist_dir, capsys):
    out = tmp_path / "run"
    assert main(TRAIN + ["--method", "standard", "--out", str(out)]) == 0  # digits, 8x8
    capsys.readouterr()
    message = _error(["eval", "--checkpoint", str(out / "checkpoint.pt"), "--dataset", "mnist", "--data-dir",
                      str(mnist_dir), "--no-progress"], capsys)
    assert "images are 1x28x28 but the checkpoint's model takes 1x8x8" in message


def test_help_lists_every_option_with_a_meaning():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 (argparse keeps them here)
    for name, sub in commands.items():
        text = sub.format_help()
        assert "``" not in text and ":func:" not in text, name
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help"
                if action.default not in (None, False):
                    assert "default" in sub.formatter_class(name)._get_help_string(action), action.dest
    assert "robustkernels demo" in parser.format_help() and "``" not in parser.format_help()


def test_default_training_gives_a_useful_model_in_two_epochs(tmp_path, capsys):
    assert main(["train", "--epochs", "2", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["val_clean_acc"] > 0.7 and last["val_pgd_acc"] > 0.3  # digits, PGD-AT, eps 0.1


def test_progress_bars_are_silent_when_stderr_is_not_a_terminal():
    from robustkernels.common import progress_bar

    with progress_bar(range(3), enabled=True) as bar:  # pytest captures stderr: not a terminal
        assert bar.disable
    with progress_bar(range(3), enabled=False) as bar:
        assert bar.disable


def test_examples_figure_marks_samples_wrong_before_the_attack(tmp_path, monkeypatch):
    from robustkernels.eval import plots
    from robustkernels.eval.report import RobustnessReport, Stat

    report = RobustnessReport(
        eps=0.1, norm="linf", n_samples=3, stochastic=False, eot_iter=1, repeats=1, clean_accuracy=Stat(2 / 3, 0, 1),
        confidence_clean=0.9, attacks={}, worst_case=Stat(1 / 3, 0, 1), overhead=1.0,
        clean_probabilities=[0.9, 0.8, 0.7], clean_correct=[True, True, False],
        examples={"images": torch.rand(3, 1, 8, 8).tolist(), "labels": [1, 2, 3], "predictions": [1, 5, 4],
                  "attack": "pgd"})
    figures = {}
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, folder, name, top=1.0: figures.setdefault(name, fig) and
                        real_save(fig, folder, name, top))
    plots.write_plots(report, tmp_path)
    fig = figures["examples.png"]
    titles = [(ax.get_title(), ax.title.get_color()) for ax in fig.axes if ax.get_title()]
    assert titles == [("1->1", "green"), ("2->5", "red"), ("3->4\nwrong clean", "grey")]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()  # the figure was closed after saving
    top_of_titles = max(ax.title.get_window_extent(renderer).y1 for ax in fig.axes if ax.get_title())
    assert fig._suptitle.get_window_extent(renderer).y0 > top_of_titles  # noqa: SLF001 (no public getter)
