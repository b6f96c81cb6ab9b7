"""``robustkernels train | eval | demo`` end to end on the bundled digits, and the download helper
against a local file:// mirror (no network)."""

import io
import json
import pickle
import tarfile

import numpy as np
import pytest

from robustkernels.cli import main
from robustkernels.data import download, load_cifar10
from robustkernels.recipes import demo


def test_train_resume_and_eval(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train", "--method", "pgd-at", "--epochs", "2", "--batch-size", "64", "--optimizer", "adam",
              "--steps", "3", "--out", str(out), "--val-samples", "100", "--no-progress"]
    assert main(common) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert main(common[:4] + ["3"] + common[5:] + ["--resume"]) == 0  # one more epoch from the checkpoint
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "checkpoint.pt"), "--attacks", "fgsm,pgd", "--samples", "64",
                 "--check-samples", "32", "--certify", "crown-ibp", "--out", str(tmp_path / "eval"),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| pgd |" in printed and "gradient-masking check" in printed
    assert "**Certified** (CROWN-IBP bounds" in printed and "| certified <= empirical | pass |" in printed
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["certified"]["method"] == "crown-ibp"
    assert {p.name for p in (tmp_path / "eval").iterdir()} == {"report.json", "report.md", "curves.png",
                                                             "histogram.png", "examples.png"}


@pytest.mark.parametrize("argv, message", [
    (["train", "--method", "nope", "--no-progress"], "method must be one of"),
    (["train", "--dataset", "cifar10", "--data-dir", "/nonexistent", "--no-progress"], "not found"),
    (["train", "--dataset", "mnist", "--no-progress"], "data_dir"),
])
def test_bad_train_arguments_give_one_clear_line(argv, message, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_negative_eps_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--eps=-8/255"])
    assert "argument --eps: must be >= 0" in capsys.readouterr().err


def test_demo_table(tmp_path, capsys):
    text = demo.run_demo(
        epochs=1, check_samples=16, samples=64, models=("standard", "LWTA + PGD-AT"), out=str(tmp_path), progress=False
    )
    assert "| standard |" in text and "| LWTA + PGD-AT |" in text and "masking checks" in text
    assert (tmp_path / "lwta" / "report.json").exists() and (tmp_path / "lwta" / "curves.png").exists()
    stages = capsys.readouterr().err  # a piped demo says what it is doing, stage by stage
    assert "demo: training standard (1/2, 1 epochs)" in stages and "demo: evaluating LWTA + PGD-AT" in stages
    assert f"demo: wrote {tmp_path / 'lwta'}: checkpoint.pt" in stages
    # its models are saved as `train` saves them: eval follows the demo
    assert main(["eval", "--checkpoint", str(tmp_path / "lwta" / "checkpoint.pt"), "--attacks", "fgsm",
                 "--samples", "32", "--no-checks", "--no-progress"]) == 0
    assert "cnn (lwta) trained with pgd_at on digits" in capsys.readouterr().out


def _tiny_cifar_archive(folder):
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            blob = pickle.dumps({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    (folder / "cifar-10-python.tar.gz").write_bytes(buffer.getvalue())


def test_download_from_a_mirror_unpacks_the_standard_layout(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _tiny_cifar_archive(mirror)
    with pytest.raises(ValueError, match="checksum"):  # not the published file: the MD5 check catches it
        download("cifar10", tmp_path / "data", mirror=mirror.as_uri(), progress=False)
    root = download("cifar10", tmp_path / "data", mirror=mirror.as_uri(), verify=False, progress=False)
    x, y = load_cifar10(root, train=True)
    assert x.shape == (20, 3, 32, 32) and y.tolist() == [0, 1, 2, 3] * 5
    with pytest.raises(ValueError, match="dataset"):
        download("imagenet", tmp_path)
