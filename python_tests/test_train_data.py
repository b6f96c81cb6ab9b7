"""fit() on data as users hold it: a map-style Dataset or a DataLoader trains exactly as the same
samples given as tensors (the order is the trainer's, a function of (seed, epoch)), resumes
exactly, and bad datasets are refused before training."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from robustkernels.data import load_digits
from robustkernels.models import build_model
from robustkernels.train import fit, make_method


@pytest.fixture(scope="module")
def digits():
    x, y, x_test, y_test = load_digits()
    return (x[:192], y[:192]), (x_test[:64], y_test[:64])


class Lazy(Dataset):
    """Builds each sample on access, as a file-backed dataset would; counts the reads."""

    def __init__(self, x, y):
        self.x, self.y, self.reads = x, y, 0

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.reads += 1
        return self.x[i].clone(), int(self.y[i])


def _train(data, val, **kwargs):
    torch.manual_seed(0)
    model = build_model("cnn", in_channels=1, image_size=8)
    history = fit(model, make_method("pgd_at", eps=0.1, steps=2), data, epochs=2, batch_size=32, lr=3e-3,
                  optimizer="adam", progress=False, val_data=val, seed=5, **kwargs)
    return model, history


def _same(a, b):
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_dataset_and_dataloader_train_exactly_as_tensors(digits):
    (x, y), (xv, yv) = digits
    reference, history = _train((x, y), (xv, yv))
    lazy = Lazy(x, y)
    model, history_ds = _train(lazy, TensorDataset(xv, yv))
    _same(reference, model)
    assert [r["val_pgd_acc"] for r in history] == [r["val_pgd_acc"] for r in history_ds]
    assert lazy.reads == 1 + 2 * len(y)  # one read to check the format, then each sample once per epoch
    loader = DataLoader(Lazy(x, y), batch_size=32, shuffle=True)  # its shuffle is replaced: our order is
    rng = torch.get_rng_state()
    model, _ = _train(loader, (xv, yv))
    _same(reference, model)
    assert torch.equal(torch.get_rng_state(), rng)


def test_dataset_training_resumes_exactly(tmp_path, digits):
    (x, y), _ = digits
    reference, _ = _train(Lazy(x, y), None)

    class Stop(Exception):
        pass

    def stop_at_step_7(info):
        if info["step"] == 7:
            raise Stop

    path = tmp_path / "ckpt.pt"
    with pytest.raises(Stop):
        _train(Lazy(x, y), None, checkpoint_path=path, checkpoint_every=3, callback=stop_at_step_7)
    resumed, _ = _train(Lazy(x, y), None, checkpoint_path=path, resume=True)
    _same(reference, resumed)


class Bad(Dataset):
    def __init__(self, item, n=4):
        self.item, self.n = item, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.item


@pytest.mark.parametrize("data, error, match", [
    (Bad((torch.zeros(1, 8, 8), 1), n=0), ValueError, "train_data is empty"),
    (Bad(torch.zeros(1, 8, 8)), TypeError, r"items must be \(x, y\) pairs"),
    (Bad((torch.zeros(1, 8, 8), 0.5)), TypeError, "labels must be integer class indices"),
    (Bad((torch.zeros(1, 8, 8, dtype=torch.int64), 1)), ValueError, "x must be a floating-point tensor"),
    ([1, 2, 3], TypeError, "train_data must be a pair of tensors"),
])
def test_bad_datasets_are_refused_before_training(data, error, match):
    calls = []
    with pytest.raises(error, match=match):
        fit(build_model("cnn", in_channels=1, image_size=8), make_method("standard"), data, epochs=1,
            progress=False, callback=calls.append)
    assert calls == []
