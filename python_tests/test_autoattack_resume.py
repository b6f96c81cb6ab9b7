"""A resumable AutoAttack run: killed with kill -9 mid-run and started again with resume=True it
gives the verdicts of an uninterrupted run; a state file of another model, data, eps or seed is
refused; ``eval --resume`` continues the AutoAttack part of an evaluation."""

import dataclasses
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from robustkernels.cli import main
from robustkernels.eval import aa_versions, autoattack

from .models import trained_digits_cnn

SETTINGS = dict(eps=0.1, steps=10, n_queries=300, seed=3, batch_size=8, progress=False)
SCRIPT = """
import sys, torch
sys.path.insert(0, {root!r})
from python_tests.models import small_cnn
from robustkernels.eval import aa_versions, autoattack
model = small_cnn(); model.load_state_dict(torch.load({weights!r}, weights_only=True)); model.eval()
x, y = torch.load({data!r}, weights_only=True)
autoattack(model, (x, y), state_path={state!r}, **{settings!r})
print("finished", flush=True)
"""


def _batches_done(path) -> int:
    try:
        return len(json.loads(path.read_text())["batches"])
    except (OSError, ValueError, KeyError):
        return 0


def test_a_killed_run_resumes_to_the_uninterrupted_verdicts(tmp_path):
    model, x, y = trained_digits_cnn()
    x, y = x[:96], y[:96]
    expected = autoattack(model, (x, y), **SETTINGS)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    torch.save((x, y), tmp_path / "d.pt")
    state = tmp_path / "aa.json"
    script = SCRIPT.format(root=str(__import__("pathlib").Path(__file__).parents[1]), weights=str(tmp_path / "w.pt"),
                           data=str(tmp_path / "d.pt"), state=str(state), settings=SETTINGS)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while _batches_done(state) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # kill -9, at whatever point it is
    proc.wait()
    done = _batches_done(state)
    assert 0 < done < 12, done  # killed mid-run, with some batches in the state file
    resumed = autoattack(model, (x, y), state_path=state, resume=True, **SETTINGS)
    assert resumed.robust == expected.robust and resumed.robust_after == expected.robust_after
    assert _batches_done(state) == 12
    again = autoattack(model, (x, y), state_path=state, resume=True, **SETTINGS)  # all done: nothing to attack
    assert again.robust == expected.robust


def test_a_state_file_of_another_run_is_refused(tmp_path):
    model, x, y = trained_digits_cnn()
    x, y = x[:16], y[:16]
    state = tmp_path / "aa.json"
    autoattack(model, (x, y), state_path=state, **SETTINGS)
    with pytest.raises(ValueError, match="exists: pass resume=True"):
        autoattack(model, (x, y), state_path=state, **SETTINGS)
    with pytest.raises(ValueError, match="written by another run: eps differ"):
        autoattack(model, (x, y), state_path=state, resume=True, **{**SETTINGS, "eps": 0.2})
    with pytest.raises(ValueError, match="seed differ"):
        autoattack(model, (x, y), state_path=state, resume=True, **{**SETTINGS, "seed": 4})
    with pytest.raises(ValueError, match="batch 0 of the data differs"):
        autoattack(model, (x.flip(0), y.flip(0)), state_path=state, resume=True, **SETTINGS)
    with pytest.raises(ValueError, match="model differ"):
        autoattack(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), (x, y), state_path=state,
                   resume=True, **SETTINGS)
    state.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable AutoAttack state file"):
        autoattack(model, (x, y), state_path=state, resume=True, **SETTINGS)


def test_a_fast_state_file_of_another_fast_schedule_is_refused(tmp_path, monkeypatch):
    """fast's settings are ours and change between releases: verdicts of an earlier schedule are
    not mixed into a resumed run."""
    model, x, y = trained_digits_cnn()
    x, y = x[:16], y[:16]
    state, fast = tmp_path / "fast.json", {**SETTINGS, "version": "fast"}
    expected = autoattack(model, (x, y), state_path=state, **fast)
    assert autoattack(model, (x, y), state_path=state, resume=True, **fast).robust == expected.robust
    row = aa_versions.TABLE[("fast", "linf")]
    monkeypatch.setitem(aa_versions.TABLE, ("fast", "linf"), dataclasses.replace(row, not_autoattack="an earlier one"))
    with pytest.raises(ValueError, match="written by another run: fast differ"):
        autoattack(model, (x, y), state_path=state, resume=True, **fast)


def test_eval_resume_continues_the_autoattack_part(tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "eval"
    assert main(["train", "--epochs", "1", "--method", "standard", "--no-progress", "--out", str(run)]) == 0
    argv = ["eval", "--checkpoint", str(run / "checkpoint.pt"), "--samples", "24", "--attacks", "fgsm",
            "--no-checks", "--no-progress", "--suite", "autoattack", "--out", str(out)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert (out / "autoattack_state.json").exists()
    assert main(argv) == 2 and "--resume" in capsys.readouterr().err  # a state exists: say how to continue
    assert main(argv + ["--resume"]) == 0
    assert first.split("AutoAttack robust accuracy")[1].split("\n")[0] in capsys.readouterr().out
