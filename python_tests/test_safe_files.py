"""Reading a file never runs code; a corrupted or foreign file is refused with its name; resume
checks that the checkpoint is this run's; a NaN loss stops training and leaves valid logs."""

import json
import os
import pickle

import numpy as np
import pytest
import torch

from robustkernels.data import load_cifar10
from robustkernels.models import build_model
from robustkernels.train import fit, make_method
from robustkernels.train.checkpoint import load, save_atomic

from .test_data import write_cifar


class Payload:
    """Unpickling this writes a marker file: the proof that a file ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_checkpoint_runs_nothing(tmp_path):
    marker, path = tmp_path / "PWNED", tmp_path / "checkpoint.pt"
    torch.save({"format": "robustkernels-checkpoint-1", "state": {"x": Payload(marker)}}, path)
    with pytest.raises(ValueError, match=r"checkpoint.pt.* holds io\.open.*refusing"):
        load(path)
    assert not marker.exists()


def test_crafted_cifar_batch_runs_nothing(tmp_path):
    write_cifar(tmp_path, {f"data_batch_{i}": 2 for i in range(1, 6)})
    marker = tmp_path / "PWNED"
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Payload(marker), b"labels": [0]}, f)
    with pytest.raises(ValueError, match=r"data_batch_3.*refusing to load io\.open"):
        load_cifar10(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("content, match", [
    (b"", "not a CIFAR-10 batch file"),
    (b"not a pickle at all", "not a CIFAR-10 batch file"),
    (pickle.dumps({b"labels": [1]}), "b'data' and b'labels'"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 12]}), "labels in 0..9"),
    (pickle.dumps({b"data": np.zeros((2, 5), np.uint8), b"labels": [1, 2]}), r"\[N, 3072\]"),
])
def test_bad_cifar_batch_is_named(tmp_path, content, match):
    write_cifar(tmp_path, {"test_batch": 2})
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        load_cifar10(tmp_path, train=False)
    assert "test_batch" in str(info.value)


def test_real_cifar_batches_load_through_the_restricted_unpickler(shared_data):
    x, y = load_cifar10(shared_data / "cifar-10-batches-py", train=False)
    assert x.shape == (846, 3, 32, 32) and set(y.unique().tolist()) == set(range(10))


def test_checkpoint_round_trip_and_corruption(tmp_path):
    path = tmp_path / "c.pt"
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([True, False])},
             "history": [{"loss": 0.5}], "step": 3, "meta": {"model": "cnn"}}
    save_atomic(state, path)
    back = load(path)
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["history"] == state["history"]
    raw = bytearray(path.read_bytes())
    offset = raw.find(np.arange(6, dtype=np.float32).tobytes())  # the tensor's bytes in the zip
    assert offset > 0
    raw[offset + 4] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="c.pt.*corrupted"):
        load(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="c.pt.*empty"):
        load(path)
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="c.pt.*not a readable"):
        load(path)
    torch.save({"w": torch.ones(2)}, path)  # a plain torch file, not ours
    with pytest.raises(ValueError, match="not written by robustkernels"):
        load(path)
    with pytest.raises(ValueError, match="is a folder"):
        load(tmp_path)


def _tiny_run(tmp_path, digits_data, **kwargs):
    (x, y), _ = digits_data
    torch.manual_seed(0)
    model = build_model("cnn", in_channels=1, image_size=8)
    options = dict(epochs=1, batch_size=64, lr=1e-3, optimizer="adam", progress=False,
                   checkpoint_path=tmp_path / "ckpt.pt", log_path=tmp_path / "log.jsonl")
    return model, fit(model, make_method(kwargs.pop("method", "standard")), (x[:128], y[:128]),
                      **{**options, **kwargs})


@pytest.fixture(scope="module")
def digits_data():
    from robustkernels.data import load_digits
    x_train, y_train, x_test, y_test = load_digits()
    return (x_train, y_train), (x_test, y_test)


def test_resume_refuses_another_runs_checkpoint(tmp_path, digits_data):
    _tiny_run(tmp_path, digits_data, seed=1)
    with pytest.raises(ValueError, match=r"another run - .*seed: 1 in the checkpoint, 2 now"):
        _tiny_run(tmp_path, digits_data, seed=2, resume=True, epochs=1)
    with pytest.raises(ValueError, match="method: 'standard' in the checkpoint, 'fgsm_rs' now"):
        _tiny_run(tmp_path, digits_data, seed=1, resume=True, method="fgsm_rs")
    _tiny_run(tmp_path, digits_data, seed=2, resume="force")  # told otherwise


def test_checkpoint_path_that_is_a_folder_fails_before_training(tmp_path, digits_data):
    calls = []
    with pytest.raises(ValueError, match="checkpoint_path .* is a folder"):
        _tiny_run(tmp_path, digits_data, checkpoint_path=tmp_path, callback=calls.append)
    assert calls == []


def test_nan_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path, digits_data):
    model, _ = _tiny_run(tmp_path, digits_data)
    before = (tmp_path / "ckpt.pt").read_bytes()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))

    class Blowup(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return self.inner(x)

    (x, y), _ = digits_data
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 1 \(epoch 1, batch 1\).*ckpt2.pt"):
        fit(Blowup(), make_method("standard"), (x[:128], y[:128]), epochs=1, batch_size=64, progress=False,
            checkpoint_path=tmp_path / "ckpt2.pt", log_path=tmp_path / "log2.jsonl")
    assert (tmp_path / "ckpt.pt").read_bytes() == before and not (tmp_path / "ckpt2.pt").exists()
    for line in (tmp_path / "log.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.jsonl"))


def test_json_lines_never_hold_bare_nan():
    from robustkernels.train.trainer import json_line
    line = json_line({"loss": float("nan"), "acc": float("inf"), "epoch": 1})
    assert json.loads(line) == {"loss": None, "acc": None, "epoch": 1} and "NaN" not in line
    assert os.linesep not in line[:-1]
