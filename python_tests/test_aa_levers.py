"""The model-side levers of ``autoattack`` and ``evaluate`` (``channels_last``, ``compile``, the
fast version's timed ``autocast``): fp32 verdicts as without them, the caller's model untouched,
the choice reported (and kept by a resumed run), bad settings refused by name. Speed is measured
in benchmarks/aa_levers.py."""

import json
import threading
import warnings

import pytest
import torch
from torch import nn

from robustkernels.eval import AutoAttackOptions, autoattack, evaluate
from robustkernels.levers import MIN_GAIN, with_levers
from robustkernels.threat import ThreatModel

from .models import IndexPutNet, NaNInBf16, ViewNet, trained_digits_cnn


def _data(n=60):
    model, x, y = trained_digits_cnn()
    return model, x[:n], y[:n]


def test_channels_last_gives_the_verdicts_of_the_plain_layout_and_leaves_the_model_alone():
    model, x, y = _data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kwargs = dict(eps=0.1, version="fast", seed=0, progress=False, autocast=None)
    plain = autoattack(model, (x, y), channels_last=False, **kwargs)
    fast = autoattack(model, (x, y), channels_last=True, **kwargs)
    agree = (torch.tensor(plain.robust) == torch.tensor(fast.robust)).float().mean()
    assert agree >= 1 - 1 / len(y)  # fp32 in either layout: at most a point at the boundary may differ
    assert fast.levers == "channels_last" and plain.levers == "none"
    assert "model inside the attacks: fp32, channels_last" in fast.log()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.is_contiguous() and p.requires_grad for p in model.parameters())
    assert not model.training


def test_auto_measures_the_layout_and_skips_models_without_convolutions():
    model, x, _ = _data()
    fast, levers = with_levers(model, x, "auto")
    assert levers.measured is not None and levers.channels_last == (levers.measured >= MIN_GAIN)
    assert (fast is model) == (not levers.channels_last)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert with_levers(mlp, x, "auto") == (mlp, with_levers(mlp, x, False)[1])  # nothing to convert, no timing
    assert with_levers(mlp, x.flatten(1), "auto")[0] is mlp


def test_evaluate_reports_its_levers_and_verdicts_stay_on_the_model():
    model, x, y = _data(40)
    kwargs = dict(eps=0.1, attacks=("pgd",), checks=False, progress=False)
    plain = evaluate(model, (x, y), channels_last=False, generator=torch.Generator().manual_seed(0), **kwargs)
    fast = evaluate(model, (x, y), channels_last=True, generator=torch.Generator().manual_seed(0), **kwargs)
    assert fast.levers == "channels_last" and "channels_last" in fast.to_markdown()
    assert plain.clean_correct == fast.clean_correct
    assert abs(plain.attacks["pgd"].robust_accuracy.mean - fast.attacks["pgd"].robust_accuracy.mean) <= 1 / 40


class _Locked(nn.Module):
    """A user module holding an object deepcopy cannot copy."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.lock = inner, threading.Lock()

    def forward(self, x):
        return self.inner(x)


def test_an_uncopyable_model_runs_without_the_lever_or_is_refused_when_asked_for():
    model, x, y = _data(20)
    locked = _Locked(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = autoattack(locked, (x, y), eps=0.1, version="fast", seed=0, progress=False)
    assert report.levers.startswith("none") and any("cannot be copied" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="channels_last / compile work on a copy"):
        autoattack(locked, (x, y), eps=0.1, version="fast", seed=0, progress=False, channels_last=True)


@pytest.mark.parametrize("kwargs, match", [
    ({"channels_last": "yes"}, "channels_last must be True, False or 'auto'"),
    ({"compile": 1}, "compile must be True, False or 'auto'"),
])
def test_bad_lever_settings_are_refused_by_name(kwargs, match):
    model, x, y = _data(8)
    with pytest.raises(ValueError, match=match):
        autoattack(model, (x, y), eps=0.1, progress=False, **kwargs)
    with pytest.raises(ValueError, match=match):
        evaluate(model, (x, y), eps=0.1, progress=False, **kwargs)


def test_channels_last_needs_images():
    mlp = nn.Sequential(nn.Linear(64, 10))
    x, y = torch.rand(8, 64), torch.randint(0, 10, (8,))
    with pytest.raises(ValueError, match=r"channels_last needs image inputs \[B, C, H, W\]"):
        autoattack(mlp, (x, y), eps=0.1, progress=False, channels_last=True)


def test_a_resumed_run_keeps_the_layout_it_chose(tmp_path):
    model, x, y = _data(40)
    path, kwargs = tmp_path / "aa.json", dict(eps=0.1, version="fast", seed=0, progress=False, batch_size=20)
    first = autoattack(model, (x[:20], y[:20]), state_path=path, **kwargs)  # one batch, then "killed"
    state = json.loads(path.read_text())
    assert state["channels_last"] == (first.levers.startswith("channels_last"))
    state["channels_last"] = not state["channels_last"]  # the choice on record wins over a new measurement
    path.write_text(json.dumps(state))
    resumed = autoattack(model, (x, y), state_path=path, resume=True, **kwargs)
    assert resumed.levers.startswith("channels_last") == state["channels_last"]
    with pytest.raises(ValueError, match="channels_last differ"):
        autoattack(model, (x, y), state_path=path, resume=True, channels_last=False, **kwargs)


def test_evaluate_resumes_its_autoattack_part_when_the_timing_chooses_otherwise(tmp_path, monkeypatch):
    """The state records the request ("auto"), not the measured layout: a second measurement that
    chooses the other layout must not make the resumed run 'another run' (CI saw this flake)."""
    import robustkernels.levers as levers

    model, x, y = _data(40)
    options = dict(version="fast", state_path=tmp_path / "aa.json")
    kwargs = dict(eps=0.1, attacks=("fgsm",), suite="autoattack", checks=False, progress=False, batch_size=20,
                  autocast=None)
    times = iter([[2.0, 1.0], [1.0, 2.0]])  # the first run measures channels_last faster, the resumed one slower
    monkeypatch.setattr(levers, "_fastest", lambda sides, x_, **_: (next(times), [None, None]) if len(sides) > 1
                        else ([float("inf")], [None]))  # one side: the check of a layout on record
    first = evaluate(model, (x, y), generator=torch.Generator().manual_seed(0),
                     autoattack=AutoAttackOptions(**options), **kwargs)
    assert first.levers.startswith("channels_last")
    resumed = evaluate(model, (x, y), generator=torch.Generator().manual_seed(0),
                       autoattack=AutoAttackOptions(**options, resume=True), **kwargs)
    assert not resumed.levers.startswith("channels_last")  # evaluate's own attacks: the new timing
    assert resumed.autoattack["robust_accuracy"] == first.autoattack["robust_accuracy"]
    assert resumed.autoattack["levers"].startswith("channels_last")  # the AutoAttack part: the layout on record


def test_compile_runs_the_attacks_on_a_compiled_copy():
    pytest.importorskip("torch._inductor")
    model, x, y = _data(12)
    try:
        report = autoattack(model, (x, y), eps=0.1, version="custom", attacks=["apgd-ce"], steps=3, seed=0,
                            progress=False, channels_last=False, compile=True)
    except Exception as error:  # no C++ compiler for inductor here
        pytest.skip(f"torch.compile unavailable: {type(error).__name__}")
    plain = autoattack(model, (x, y), eps=0.1, version="custom", attacks=["apgd-ce"], steps=3, seed=0,
                       progress=False, channels_last=False)
    assert report.levers == "torch.compile"
    assert abs(report.robust_accuracy.mean - plain.robust_accuracy.mean) <= 1 / 12


def test_the_layout_timing_takes_turns_and_keeps_each_sides_fastest_pass(monkeypatch):
    """``"auto"``'s measurement: passes of the sides alternate (a drift of the machine favours
    none) and a slow outlier pass (another process) does not decide."""
    import robustkernels.levers as levers

    plain, converted = nn.Linear(3, 2), nn.Linear(3, 2)
    calls = []
    slow = iter([9.0, 2.0, 7.0] + [2.0] * levers.TIMED_PASSES)  # the plain side, outliers included
    fast = iter([1.0, 5.0] + [1.0] * levers.TIMED_PASSES)
    bf16 = iter([3.0] * (levers.TIMED_PASSES + 1))

    def timed(model, x, precision=None):
        calls.append((model, precision))
        return (next(bf16) if precision else next(slow) if model is plain else next(fast)), True

    monkeypatch.setattr(levers, "_pass_seconds", timed)
    sides = [(plain, None), (converted, None), (plain, "bf16")]
    assert levers._fastest(sides, torch.zeros(4, 3)) == ([2.0, 1.0, 3.0], [None] * 3)
    assert calls == sides * (levers.TIMED_PASSES + 1)


@pytest.mark.parametrize("times, chosen", [
    # (plain fp32, plain bf16, channels_last fp32, channels_last bf16) -> (channels_last, autocast)
    ([4.0, 2.0, 3.0, 1.0], (True, "bf16")),
    ([4.0, 2.0, 3.0, 2.0], (False, "bf16")),  # channels_last pays in fp32 only: bf16's layout decides
    ([4.0, 2.0, 2.0, 1.9], (True, None)),  # bf16 pays against the plain layout only, not the best fp32
    ([2.0, 1.9, 1.0, 1.0], (True, None)),  # bf16 under MIN_GAIN in either layout
    ([2.0, 1.0, 2.0, 2.0], (False, "bf16")),
])
def test_auto_autocast_keeps_bf16_and_the_layout_only_where_each_pays(monkeypatch, times, chosen):
    import robustkernels.levers as levers

    model, x, _ = _data(8)
    monkeypatch.setattr(levers, "native_bf16", lambda device: True)
    seen = []

    def fastest(sides, x_, **_):
        seen.append([(isinstance(m, levers.ChannelsLast), p) for m, p in sides])
        return times, [None] * 4

    monkeypatch.setattr(levers, "_fastest", fastest)
    fast, lv = with_levers(model, x, "auto", False, "auto")
    assert seen == [[(False, None), (False, "bf16"), (True, None), (True, "bf16")]]
    assert (lv.channels_last, lv.autocast) == chosen
    assert isinstance(fast, levers.ChannelsLast) == chosen[0] and (fast is model) == (not chosen[0])
    assert "bf16 measured" in lv.describe()


def test_auto_autocast_is_fp32_without_native_bf16_and_for_fixed_settings(monkeypatch):
    import robustkernels.levers as levers

    model, x, _ = _data(8)
    monkeypatch.setattr(levers, "native_bf16", lambda device: False)
    checked = []
    monkeypatch.setattr(levers, "_fastest", lambda sides, x_, **_: checked.append(sides) or ([float("inf")], [None]))
    assert with_levers(model, x, False, False, "auto") == (model, levers.Levers(False, False))
    assert checked == []  # nothing to time or check
    assert with_levers(model, x, False, False, "bf16")[1].autocast == "bf16"  # as given, untimed
    assert checked == [[(model, "bf16")]]  # checked once: the model runs in bf16


def test_fast_times_bf16_and_reports_it_while_the_other_versions_stay_fp32(monkeypatch):
    import robustkernels.levers as levers

    model, x, y = _data(30)
    monkeypatch.setattr(levers, "native_bf16", lambda device: True)
    monkeypatch.setattr(levers, "_fastest", lambda sides, x_, **_: ([2.0, 1.0][:len(sides)], [None] * len(sides)))
    kwargs = dict(eps=0.1, seed=0, progress=False, channels_last=False, steps=4, n_queries=20)
    fast = autoattack(model, (x, y), version="fast", **kwargs)
    assert fast.autocast == "bf16" and "bf16 autocast" in fast.log() and "bf16 measured 2.00x" in fast.levers
    standard = autoattack(model, (x, y), version="standard", **kwargs)
    assert standard.autocast is None and "bf16" not in standard.log()
    plain = autoattack(model, (x, y), version="fast", autocast=None, **kwargs)
    assert plain.autocast is None
    agree = (torch.tensor(plain.robust) == torch.tensor(fast.robust)).float().mean()
    assert agree >= 1 - 2 / len(y)  # fp32 verdicts: bf16 moves the attacks, at most a point or two at the boundary


def test_a_resumed_run_keeps_the_precision_it_chose(tmp_path, monkeypatch):
    import robustkernels.levers as levers

    model, x, y = _data(40)
    monkeypatch.setattr(levers, "native_bf16", lambda device: True)
    times = iter([[2.0, 1.0], [1.0, 2.0]])  # bf16 faster in the first run, slower when resumed
    monkeypatch.setattr(levers, "_fastest", lambda sides, x_, **_: (next(times), [None, None]) if len(sides) > 1
                        else ([float("inf")], [None]))  # one side: the check of a layout on record
    path = tmp_path / "aa.json"
    kwargs = dict(eps=0.1, version="fast", seed=0, progress=False, batch_size=20, channels_last=False, steps=4,
                  n_queries=20, state_path=path)
    first = autoattack(model, (x[:20], y[:20]), **kwargs)  # one batch, then "killed"
    assert first.autocast == "bf16" and json.loads(path.read_text())["autocast"] == "bf16"
    resumed = autoattack(model, (x, y), resume=True, **kwargs)
    assert resumed.autocast == "bf16"  # the precision on record, not the new measurement


@pytest.mark.parametrize("value", ["bf17", 16, ["bf16"]])
def test_a_bad_autocast_is_refused_by_name(value):
    model, x, y = _data(8)
    with pytest.raises(ValueError, match="autocast must be one of"):
        autoattack(model, (x, y), eps=0.1, progress=False, autocast=value)
    with pytest.raises(ValueError, match="autocast must be one of"):
        evaluate(model, (x, y), eps=0.1, progress=False, autocast=value)


@pytest.mark.parametrize("native", [True, False])
def test_under_torch_distributed_auto_autocast_is_the_same_untimed_choice_on_every_process(monkeypatch, native):
    """Processes time differently; a precision that differed between them would make the verdicts
    depend on the world size. There "auto" follows the device's native bf16 alone."""
    import sys

    import robustkernels.levers as levers

    aa = sys.modules["robustkernels.eval.autoattack"]
    model, x, y = _data(20)
    monkeypatch.setattr(aa, "native_bf16", lambda device: native)
    monkeypatch.setattr(levers, "native_bf16", lambda device: pytest.fail("timed under torch.distributed"))
    threat = ThreatModel.build(0.1)
    for rank in (0, 1):
        options = AutoAttackOptions(version="fast", seed=0, progress=False, channels_last=False, steps=4, n_queries=20)
        run = aa.AutoAttackRun(model, threat, options, rank=rank, world=2)
        run.add(x, y, rank)
        assert run.autocast == ("bf16" if native else None)
    single = aa.AutoAttackRun(model, threat, AutoAttackOptions(version="standard", seed=0, progress=False), rank=0,
                              world=2)
    assert single._autocast() is None  # the other versions stay fp32


@pytest.mark.parametrize("net, lever, asked", [
    (ViewNet, "channels_last", dict(channels_last=True)),
    (IndexPutNet, "bf16", dict(autocast="bf16")),
    (NaNInBf16, "bf16", dict(autocast="bf16")),
])
def test_auto_leaves_out_a_lever_the_model_fails_on_and_refuses_it_when_asked_for(monkeypatch, net, lever, asked):
    """A model built elsewhere that fails with a lever (or gives a non-finite gradient) still runs
    under the defaults, without that lever, the report saying why; asked for, it is refused."""
    import robustkernels.levers as levers

    monkeypatch.setattr(levers, "native_bf16", lambda device: True)
    torch.manual_seed(0)
    model, x, y = net(), torch.rand(24, 1, 8, 8), torch.randint(0, 10, (24,))
    report = autoattack(model, (x, y), eps=0.1, version="fast", seed=0, progress=False, steps=4, n_queries=20)
    assert f"{lever} failed: " in report.levers and (report.autocast is None if lever == "bf16" else True)
    assert "channels_last," not in report.levers[:15] if lever == "channels_last" else True
    plain = autoattack(model, (x, y), eps=0.1, version="fast", seed=0, progress=False, steps=4, n_queries=20,
                       channels_last=False, autocast=None)
    assert report.robust == plain.robust or lever == "channels_last"  # bf16 left out: the fp32 run itself
    name = next(iter(asked))
    with pytest.raises(ValueError, match=f"{name}=.*: the model fails a forward and backward pass .* leave {name} off"):
        autoattack(model, (x, y), eps=0.1, version="fast", seed=0, progress=False, **asked)
