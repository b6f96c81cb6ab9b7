"""Weight averaging in fit(): the average against its formula written out, BatchNorm buffers,
exact resume, best-robust and the checkpoint's weights for eval, the levers, bad arguments."""

import copy

import pytest
import torch
from torch import nn

from robustkernels.data import load_digits
from robustkernels.train import fit, make_method
from robustkernels.train.checkpoint import load as load_checkpoint
from robustkernels.train.checkpoint import model_from_checkpoint

EPS = 0.1
TAU = 0.9


def bn_cnn() -> nn.Module:
    """A CNN with BatchNorm: running statistics and an integer buffer to average or copy."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 64, 10))


@pytest.fixture(scope="module")
def data():
    x, y, _, _ = load_digits()
    return x[:192], y[:192]


def _fit(model, data, **kwargs):
    options = dict(epochs=2, batch_size=32, lr=3e-3, optimizer="adam", schedule="constant", weight_decay=0.0,
                   progress=False, seed=1, weight_average=TAU)
    return fit(model, make_method("pgd_at", eps=EPS, steps=2), data, **{**options, **kwargs})


def test_the_average_is_the_formula_written_out(data):
    torch.manual_seed(0)
    model = bn_cnn()
    start = copy.deepcopy(model.state_dict())
    seen = []  # the training weights after every step, as the callback sees them
    _fit(model, data, callback=lambda info: seen.append(copy.deepcopy(model.state_dict())))
    trained_final = seen[-1]
    avg = {k: v.clone() for k, v in start.items()}
    for n, weights in enumerate(seen):
        decay = min(TAU, (1 + n) / (10 + n))  # warm-up, then tau
        for k, v in weights.items():
            avg[k] = decay * avg[k] + (1 - decay) * v if v.is_floating_point() else v.clone()
    assert len(seen) == 12
    for k, v in model.state_dict().items():  # the model ends holding the average
        torch.testing.assert_close(v, avg[k], rtol=1e-5, atol=1e-6, msg=k)
    assert model.state_dict()["1.num_batches_tracked"] == 12  # copied, not averaged
    assert not torch.allclose(model.state_dict()["1.running_mean"], trained_final["1.running_mean"])


def test_resume_restores_the_average_bit_for_bit(tmp_path, data):
    torch.manual_seed(0)
    reference = bn_cnn()
    expected = _fit(reference, data)

    class Interrupt(Exception):
        pass

    def stop_at_step_7(info):
        if info["step"] == 7:
            raise Interrupt

    path = tmp_path / "ckpt.pt"
    torch.manual_seed(0)
    with pytest.raises(Interrupt):
        _fit(bn_cnn(), data, checkpoint_path=path, checkpoint_every=3, callback=stop_at_step_7)
    saved = load_checkpoint(path)
    assert saved["step"] == 6 and saved["average"]["updates"] == 6 and saved["weights_for_eval"] == "average"
    torch.manual_seed(123)  # another process: other initial weights
    resumed = bn_cnn()
    history = _fit(resumed, data, checkpoint_path=path, resume=True)
    for (k, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert [r["loss"] for r in history] == [r["loss"] for r in expected]
    with pytest.raises(ValueError, match="weight_average"):  # another tau is another run
        _fit(bn_cnn(), data, checkpoint_path=path, resume=True, weight_average=0.99)


def test_validation_and_best_robust_read_the_average(tmp_path, data):
    x, y = data
    path = tmp_path / "ckpt.pt"
    torch.manual_seed(0)
    model = bn_cnn()
    history = _fit(model, (x, y), val_data=(x[:64], y[:64]), keep="best-robust", checkpoint_path=path)
    kept = next(r for r in history if r["kept"])
    assert load_checkpoint(path)["weights_for_eval"] == "model"  # the best average was put into "model"
    with torch.no_grad():  # the kept record's validation is that of the weights the model ends with
        clean = (model.eval()(x[:64]).argmax(1) == y[:64]).float().mean().item()
    assert clean == pytest.approx(kept["val_clean_acc"])


def test_eval_reads_the_averaged_weights_from_the_checkpoint(tmp_path, data):
    path = tmp_path / "ckpt.pt"
    torch.manual_seed(0)
    from robustkernels.models import build_model

    model = build_model("cnn", in_channels=1, image_size=8)
    meta = dict(model="cnn", activation="relu", pni=False, in_channels=1, image_size=8, num_classes=10,
                dataset="digits", eps=EPS)
    _fit(model, data, checkpoint_path=path, meta=meta)
    state = load_checkpoint(path)
    rebuilt, _ = model_from_checkpoint(str(path))
    for k, v in rebuilt.state_dict().items():
        torch.testing.assert_close(v, state["average"]["model"][k], rtol=0, atol=0)
        torch.testing.assert_close(v, model.state_dict()[k], rtol=0, atol=0)
    assert any(not torch.equal(state["model"][k], v) for k, v in rebuilt.state_dict().items())


def test_averaging_runs_with_the_levers(data):
    torch.manual_seed(0)
    model = bn_cnn()
    history = _fit(model, data, epochs=1, autocast="bf16", channels_last=True)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert len(history) == 1


@pytest.mark.parametrize("tau, error", [(1.0, ValueError), (0.0, ValueError), (-0.5, ValueError),
                                        ("0.99", TypeError), (True, TypeError)])
def test_bad_taus_are_refused_by_name(tau, error, data):
    with pytest.raises(error, match="weight_average"):
        _fit(bn_cnn(), data, weight_average=tau)


def test_resume_refuses_dropping_or_adding_weight_averaging(tmp_path, data):
    path = tmp_path / "ckpt.pt"
    torch.manual_seed(0)
    _fit(bn_cnn(), data, epochs=1, checkpoint_path=path)
    with pytest.raises(ValueError, match="weight_average: 0.9 in the checkpoint, None now"):
        _fit(bn_cnn(), data, checkpoint_path=path, resume=True, weight_average=None)
    plain = tmp_path / "plain.pt"
    _fit(bn_cnn(), data, epochs=1, checkpoint_path=plain, weight_average=None)
    with pytest.raises(ValueError, match="weight_average: None in the checkpoint, 0.9 now"):
        _fit(bn_cnn(), data, checkpoint_path=plain, resume=True)
    history = _fit(bn_cnn(), data, checkpoint_path=plain, resume="force")  # forced: the average starts there
    assert len(history) == 2
