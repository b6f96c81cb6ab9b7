"""AutoAttack in shards: ``autoattack(..., shard=(K, N), state_path=...)`` on every N-th batch,
and ``merge_shards`` giving the unsharded run's report verdict for verdict; a shard stopped
mid-run and resumed merges the same; files of other runs, missing, repeated or unfinished
shards are refused by name."""

import json
import warnings

import pytest
import torch
from torch import nn

from robustkernels.eval import autoattack, merge_shards

from .killing import Stop, kill_after, stopping_at


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


@pytest.fixture(scope="module")
def data():
    model = _model()
    x = torch.rand(21, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::5] = (y[::5] + 1) % 10  # some clean mistakes too
    return x, y


# short attacks (steps and queries capped): the merge's equality, not AutoAttack's strength, is tested
SETTINGS = dict(eps=0.05, seed=3, batch_size=4, progress=False, autocast=None, channels_last=False, steps=8,
                n_queries=40)


def _shards(model, data, tmp_path, version, order=(2, 0, 1), n=3, **extra):
    paths = [tmp_path / f"{version}-{k}.json" for k in range(n)]
    for k in order:
        autoattack(model, data, version=version, shard=(k, n), state_path=paths[k], **SETTINGS, **extra)
    return paths


@pytest.mark.parametrize("version", ["standard", "fast"])
def test_three_shards_merge_into_the_unsharded_run(version, data, tmp_path):
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = autoattack(model, data, version=version, **SETTINGS)
        merged = merge_shards(_shards(model, data, tmp_path, version))
    assert 0 < sum(one.robust) < len(one.robust)  # some points fall, some hold: verdicts to compare
    assert merged.robust == one.robust and merged.robust_after == one.robust_after
    assert merged.robust_accuracy == one.robust_accuracy and merged.clean_accuracy == one.clean_accuracy
    assert merged.attacked == one.attacked and merged.n_samples == len(data[1]) == one.n_samples
    assert (merged.version, merged.attacks, merged.classes, merged.levers) == (
        one.version, one.attacks, one.classes, one.levers)


def test_a_stopped_shard_resumes_to_the_same_merge(data, tmp_path):
    """Shard 1 is stopped after its first batch (as kill -9 leaves it: the file holds the batches
    done), refused by the merge as unfinished, then resumed; the merge equals the unsharded run."""
    model = _model()
    x, y = data
    one = autoattack(model, data, version="fast", **SETTINGS)
    paths = _shards(model, data, tmp_path, "fast", order=(0, 2))
    state = tmp_path / "fast-1.json"

    with pytest.raises(Stop):  # fails at sample 8 (batch 2 at batch_size 4): shard 1 attacks batch 1, then stops
        autoattack(model, stopping_at(x, y, 8, batch_size=4), version="fast", shard=(1, 3),
                   state_path=state, **SETTINGS)
    assert list(json.loads(state.read_text())["batches"]) == ["1"]
    with pytest.raises(ValueError, match="shards did not finish"):
        merge_shards(paths)
    autoattack(model, data, version="fast", shard=(1, 3), state_path=state, resume=True, **SETTINGS)
    assert merge_shards(paths).robust == one.robust


def test_shards_of_other_runs_are_refused_by_name(data, tmp_path):
    model = _model()
    paths = _shards(model, data, tmp_path, "fast")
    with pytest.raises(ValueError, match=r"shards missing: \[2\] of 3"):
        merge_shards(paths[:2])
    with pytest.raises(ValueError, match=r"shards given twice: \[0\]"):
        merge_shards([paths[0], paths[0], paths[1], paths[2]])
    other = tmp_path / "other"
    other.mkdir()
    for name, changed, what in (("eps", dict(model=model, data=data, eps=0.06), "eps"),
                                ("model", dict(model=_model(1), data=data), "model"),
                                ("data", dict(model=model, data=(data[0].flip(0), data[1].flip(0))), "data")):
        settings = {**SETTINGS, "eps": changed.pop("eps", SETTINGS["eps"])}
        path = other / f"{name}.json"
        autoattack(changed["model"], changed["data"], version="fast", shard=(2, 3), state_path=path,
                   **{k: v for k, v in settings.items()})
        with pytest.raises(ValueError, match=f"not of one run: .*{what}"):
            merge_shards([paths[0], paths[1], path])
    with pytest.raises(ValueError, match="not a shard's state file"):
        unsharded = tmp_path / "whole.json"
        autoattack(model, data, version="fast", state_path=unsharded, **SETTINGS)
        merge_shards([unsharded])


@pytest.mark.parametrize("shard", [(3, 3), (-1, 2), (0, 0), (1,), "0/2", (True, 2)])
def test_bad_shards_are_refused(shard, data, tmp_path):
    with pytest.raises(ValueError, match="shard must be"):
        autoattack(_model(), data, version="fast", shard=shard, state_path=tmp_path / "s.json", **SETTINGS)


def test_a_shard_needs_its_state_file(data):
    with pytest.raises(ValueError, match="pass state_path"):
        autoattack(_model(), data, version="fast", shard=(0, 2), **SETTINGS)


def test_evaluate_refuses_a_sharded_autoattack_by_name(data, tmp_path):
    from robustkernels.eval import AutoAttackOptions, evaluate

    options = AutoAttackOptions(version="fast", shard=(0, 2), state_path=str(tmp_path / "s.json"))
    with pytest.raises(ValueError, match="set shard= on evaluate"):
        evaluate(_model(), data, eps=0.05, suite="autoattack", autoattack=options, progress=False)


def test_the_merge_command_prints_and_writes_the_merged_report(data, tmp_path, capsys):
    from robustkernels.cli import main

    model = _model()
    folder = tmp_path / "shards"
    folder.mkdir()
    paths = [folder / f"shard-{k}.json" for k in range(2)]
    for k in range(2):
        autoattack(model, data, version="fast", shard=(k, 2), state_path=paths[k], **SETTINGS)
    one = autoattack(model, data, version="fast", **SETTINGS)
    assert main(["merge", str(folder), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert str(one.robust_accuracy) in printed
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["robust"] == one.robust and (tmp_path / "out" / "report.md").exists()
    assert main(["merge", str(paths[0])]) == 2
    assert "shards missing: [1] of 2" in capsys.readouterr().err


KILL_SCRIPT = """
import torch
from torch import nn
from robustkernels.eval import autoattack
model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
model.load_state_dict(torch.load({weights!r}, weights_only=True))
x, y = torch.load({data!r}, weights_only=True)
autoattack(model, (x, y), version="fast", shard=(1, 2), state_path={state!r}, resume=True, **{settings!r})
print("finished", flush=True)
"""


def test_a_shard_killed_with_kill_9_resumes_to_the_same_merge(tmp_path):
    """Shard 1 of 2 in its own process, killed with SIGKILL after some batches: the merge refuses
    it as unfinished; resumed, the merge equals the unsharded run."""
    model = _model()
    x = torch.rand(96, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x).argmax(1)
    one = autoattack(model, (x, y), version="fast", **SETTINGS)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    torch.save((x, y), tmp_path / "d.pt")
    paths = [tmp_path / "shard-0.json", tmp_path / "shard-1.json"]
    autoattack(model, (x, y), version="fast", shard=(0, 2), state_path=paths[0], **SETTINGS)
    script = KILL_SCRIPT.format(weights=str(tmp_path / "w.pt"), data=str(tmp_path / "d.pt"), state=str(paths[1]),
                                settings=SETTINGS)
    done = kill_after(script, paths[1], 2)
    assert 0 < done < 12, done  # killed mid-run: 12 batches are shard 1's
    with pytest.raises(ValueError, match="shards did not finish"):
        merge_shards(paths)
    autoattack(model, (x, y), version="fast", shard=(1, 2), state_path=paths[1], resume=True, **SETTINGS)
    merged = merge_shards(paths)
    assert merged.robust == one.robust and merged.robust_after == one.robust_after
