"""Training methods and the loop: each method lowers its loss, PGD-AT beats standard training on
PGD accuracy, resume continues exactly, schedules, bad arguments."""

import json
import os

import pytest
import torch

from robustkernels.attacks import PGD
from robustkernels.data import load_digits
from robustkernels.models import build_model
from robustkernels.train import METHODS, fit, lr_factor, make_method, scheduled_eps
from robustkernels.train.checkpoint import load as load_checkpoint

from .models import IndexPutNet, ViewNet, accuracy, small_cnn

EPS = 0.1


@pytest.fixture(scope="module")
def digits():
    x_train, y_train, x_test, y_test = load_digits()
    return (x_train, y_train), (x_test, y_test)


def _fit(model, method, data, **kwargs):
    options = dict(epochs=3, batch_size=64, lr=3e-3, optimizer="adam", schedule="constant", weight_decay=0.0,
                   progress=False)
    return fit(model, method, data, **{**options, **kwargs})


@pytest.mark.parametrize("name", list(METHODS))
def test_each_method_lowers_its_loss(name, digits):
    torch.manual_seed(0)
    (x, y), _ = digits
    model = build_model("cnn", in_channels=1, image_size=8, pni=name == "pni_at")
    extra = {"sensitivity": {"weight": 1e-3}, "free_at": {"replays": 2}}.get(name, {})
    history = _fit(model, make_method(name, eps=EPS, steps=3, **extra), (x[:384], y[:384]), epochs=4)
    assert len(history) == 4
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_pgd_at_beats_standard_on_pgd_accuracy(digits):
    train, (x_test, y_test) = digits
    accs = {}
    for name in ("standard", "pgd_at"):
        torch.manual_seed(0)
        model = small_cnn()
        _fit(model, make_method(name, eps=EPS, steps=5), train, epochs=8)
        model.eval()
        x_adv = PGD(model, eps=EPS, alpha=EPS / 4, steps=20)(x_test, y_test)
        accs[name] = accuracy(model, x_adv, y_test)
    assert accs["pgd_at"] > accs["standard"] + 0.15, accs


def test_resume_after_interruption_continues_from_the_same_step(tmp_path, digits):
    (x, y), _ = digits
    data = (x[:256], y[:256])
    kwargs = dict(epochs=2, batch_size=32, seed=3)

    torch.manual_seed(0)
    reference = build_model("cnn", activation="lwta", in_channels=1, image_size=8)
    expected = _fit(reference, make_method("pgd_at", eps=EPS, steps=2), data, **kwargs)

    class Interrupt(Exception):
        pass

    def stop_at_step_11(info):
        if info["step"] == 11:
            raise Interrupt

    path, log = tmp_path / "ckpt.pt", tmp_path / "log.jsonl"
    torch.manual_seed(0)
    model = build_model("cnn", activation="lwta", in_channels=1, image_size=8)
    with pytest.raises(Interrupt):
        _fit(model, make_method("pgd_at", eps=EPS, steps=2), data, checkpoint_path=path, checkpoint_every=5,
             log_path=log, callback=stop_at_step_11, **kwargs)
    assert load_checkpoint(path)["step"] == 10  # the last checkpoint before the interruption
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]  # atomic writes leave no temp file

    torch.manual_seed(123)  # a fresh process: different model init, different global RNG
    resumed = build_model("cnn", activation="lwta", in_channels=1, image_size=8)
    history = _fit(resumed, make_method("pgd_at", eps=EPS, steps=2), data, checkpoint_path=path, resume=True,
                   log_path=log, **kwargs)
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [r["loss"] for r in history] == pytest.approx([r["loss"] for r in expected], rel=1e-6)
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2]


def test_fit_leaves_global_rng_and_is_seeded(digits):
    (x, y), _ = digits
    state = torch.get_rng_state()
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = small_cnn()
        torch.set_rng_state(state)
        _fit(model, make_method("fgsm_rs", eps=EPS), (x[:128], y[:128]), epochs=1, seed=5)
        assert torch.equal(torch.get_rng_state(), state)
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_cost_levers_run(digits):
    (x, y), _ = digits
    torch.manual_seed(0)
    model = build_model("cnn", in_channels=1, image_size=8)
    history = _fit(model, make_method("pgd_at", eps=EPS, steps=2), (x[:128], y[:128]), epochs=2,
                   autocast="bf16", channels_last=True, schedule="cyclic")
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in history)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("net, lever, asked", [(ViewNet, "channels_last", dict(channels_last=True)),
                                                (IndexPutNet, "autocast", dict(autocast="bf16"))])
def test_fast_drops_a_lever_the_model_fails_on_and_an_asked_one_is_refused(digits, monkeypatch, net, lever, asked):
    """auto_levers=True on a user model that fails with one of its levers (a .view of a channels_last
    activation, an op without bf16) trains without it, with a warning naming it; asking for that
    lever is refused before any step, naming the argument."""
    import robustkernels.train.auto_levers as auto

    monkeypatch.setattr(auto, "native_bf16", lambda device: True)  # auto_levers picks bf16 on any CPU
    (x, y), _ = digits
    torch.manual_seed(0)
    model = net()
    with pytest.warns(RuntimeWarning, match=f"auto_levers=True: {lever} off, the model fails"):
        history = _fit(model, make_method("pgd_at", eps=EPS, steps=2), (x[:64], y[:64]), epochs=1, auto_levers=True)
    assert torch.isfinite(torch.tensor(history[-1]["loss"]))  # with the lever, the first step would raise
    untouched = net()
    before = {k: v.clone() for k, v in untouched.state_dict().items()}
    refused = f"{lever}=.*: the model fails a forward and backward pass .* leave {lever} off"
    with pytest.raises(ValueError, match=refused):
        _fit(untouched, make_method("pgd_at", eps=EPS, steps=2), (x[:64], y[:64]), epochs=1, **asked)
    assert all(torch.equal(before[k], v) for k, v in untouched.state_dict().items())


def test_lr_and_eps_schedules():
    assert (
        lr_factor("cyclic", 0.0) == 0 and lr_factor("cyclic", 0.4) == pytest.approx(1) and lr_factor("cyclic", 1) == 0
    )
    assert lr_factor("step", 0.1) == 1 and lr_factor("step", 0.6) == pytest.approx(0.1)
    values = [scheduled_eps(0.3, e, 5) for e in range(5)]
    assert values[0] == pytest.approx(0.03) and values[-1] == pytest.approx(0.3)
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_hybrid_adapts_its_weight_and_eps(digits):
    (x, y), (x_test, y_test) = digits
    torch.manual_seed(0)
    method = make_method("hybrid", eps=EPS, steps=2)
    history = _fit(small_cnn(), method, (x[:128], y[:128]), epochs=3, val_data=(x_test[:64], y_test[:64]))
    assert [r["eps"] for r in history] == pytest.approx([EPS / 10, 0.55 * EPS, EPS])
    last = history[-2]
    assert history[-1]["clean_weight"] == pytest.approx(
        last["val_pgd_acc"] / (last["val_pgd_acc"] + last["val_clean_acc"])
    )


def test_mixed_draws_every_kind(digits):
    (x, y), _ = digits
    torch.manual_seed(0)
    history = _fit(small_cnn(), make_method("mixed", eps=EPS, steps=2), (x[:640], y[:640]), epochs=2, batch_size=16)
    counts = {k: sum(r["batches"][k] for r in history) for k in history[0]["batches"]}
    assert sum(counts.values()) == 80 and min(counts.values()) > 0
    assert 25 <= counts["clean"] <= 55  # about half of 80 batches stay clean


def test_free_at_carries_the_perturbation(digits):
    (x, y), _ = digits
    method = make_method("free_at", eps=EPS, replays=3)
    _fit(small_cnn(), method, (x[:64], y[:64]), epochs=1, batch_size=64)
    assert method.delta.abs().max() <= EPS + 1e-6 and method.delta.abs().max() > 0


def test_pni_at_needs_pni_layers_and_skips_alpha_decay(digits):
    (x, y), _ = digits
    with pytest.raises(ValueError, match="PNI"):
        _fit(small_cnn(), make_method("pni_at", eps=EPS), (x[:64], y[:64]))
    model = build_model("cnn", pni=True, in_channels=1, image_size=8)
    _fit(model, make_method("pni_at", eps=EPS, steps=2), (x[:64], y[:64]), epochs=1, weight_decay=0.5, lr=1e-9)
    assert all(float(m.alpha.detach()) == pytest.approx(0.25, abs=1e-6) for m in model.modules() if hasattr(m, "alpha"))


@pytest.mark.parametrize("call, match", [
    (lambda d: make_method("nope"), "method must be one of"),
    (lambda d: make_method("pgd_at", eps=-0.1), "eps must be >= 0"),
    (lambda d: fit(small_cnn(), make_method("standard"), d, epochs=0), "epochs must be >= 1"),
    (lambda d: fit(small_cnn(), make_method("standard"), d, optimizer="lbfgs"), "optimizer"),
    (lambda d: fit(small_cnn(), make_method("standard"), d, resume=True), "checkpoint_path"),
    (lambda d: fit(small_cnn(), make_method("standard"), d, seed=-1), "seed must be an int >= 0"),
    (lambda d: fit(small_cnn(), make_method("standard"), d, seed=3.5), "seed must be an int >= 0"),
    (lambda d: fit(small_cnn(), make_method("standard"), d, seed=torch.tensor(3)), "seed must be an int >= 0"),
    (lambda d: fit(small_cnn(), make_method("standard"), (d[0], d[1].float())), "y must be int64"),
])
def test_bad_arguments(call, match, digits):
    (x, y), _ = digits
    with pytest.raises((ValueError, TypeError), match=match):
        call((x[:32], y[:32]))
