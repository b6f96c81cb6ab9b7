"""AutoAttack against hostile inputs (a red-team report): state files of another model function
or with records that do not fit their batch, an empty first batch, unclear errors, a fast report
quoting a gap that does not apply, and a readable report."""

import json
import re
import shutil
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustkernels.eval import AutoAttackOptions, AutoAttackReport, AutoAttackRun, Stat, autoattack
from robustkernels.eval.aa_versions import version_for
from robustkernels.nn import LWTA
from robustkernels.threat import ThreatModel

SETTINGS = dict(eps=0.1, steps=2, n_queries=10, seed=3, batch_size=8, progress=False)
X = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1))


def mlp(activation: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), activation, nn.Linear(32, 10))


class Squash(nn.Module):
    """The same modules and weights whichever ``squash``: a plain attribute picks the function."""

    def __init__(self, squash: bool):
        super().__init__()
        torch.manual_seed(1)
        self.fc1, self.fc2, self.squash = nn.Linear(64, 32), nn.Linear(32, 10), squash

    def forward(self, x):
        h = self.fc1(x.flatten(1))
        return self.fc2(torch.sigmoid(h) if self.squash else torch.relu(h))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A state file of a finished run of the ReLU MLP on X, Y (two batches of 8)."""
    path = tmp_path_factory.mktemp("aa") / "state.json"
    autoattack(mlp(nn.ReLU()), (X, Y), state_path=path, **SETTINGS)
    return path


def copy_of(written, tmp_path, change=None):
    """A copy of the state file, its JSON changed in place by ``change``."""
    path = tmp_path / "state.json"
    shutil.copy(written, path)
    if change is not None:
        state = json.loads(path.read_text())
        change(state)
        path.write_text(json.dumps(state))
    return path


def resume(path, model=None, data=(X, Y), **settings):
    return autoattack(mlp(nn.ReLU()) if model is None else model, data, state_path=path, resume=True,
                      **{**SETTINGS, **settings})


# 5. a state file is tied to the model's function, not its weights only

def test_another_architecture_with_the_same_weights_is_refused(written, tmp_path):
    assert resume(copy_of(written, tmp_path)).n_samples == 16  # the same model resumes
    with pytest.raises(ValueError, match=r"state\.json' was written by another run: model_structure differs"):
        resume(copy_of(written, tmp_path), mlp(nn.Sigmoid()))


def test_another_forward_with_the_same_modules_and_weights_is_refused(tmp_path):
    path = tmp_path / "state.json"
    autoattack(Squash(False), (X, Y), state_path=path, **SETTINGS)
    assert resume(path, Squash(False)).n_samples == 16
    with pytest.raises(ValueError, match=r"state\.json' was written by another run: model_outputs differs"):
        resume(path, Squash(True))


def test_a_stochastic_model_resumes_on_its_weights_and_modules(tmp_path):
    lwta = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), LWTA(2), nn.Linear(32, 10))
    path, custom = tmp_path / "state.json", dict(version="custom", attacks=["apgd-ce"], repeats=1)
    first = autoattack(lwta, (X, Y), state_path=path, **SETTINGS, **custom)
    assert first.stochastic and json.loads(path.read_text())["identity"]["model_outputs"] == "stochastic"
    assert resume(path, lwta, **custom).robust == first.robust


# 6. each batch's records must be one per sample, in order, as written

def _set_records(change):
    def apply(state):
        state["batches"]["0"]["records"] = change(state["batches"]["0"]["records"])
    return apply


def _edited(records):
    records[0][2] = 0 if records[0][2] else 1
    return records


@pytest.mark.parametrize("change,why", [
    (lambda r: r[:5], "batch 0 holds 5 records for its 8 samples"),
    (lambda r: [], "batch 0 holds 0 records for its 8 samples"),
    (lambda r: r + r[:1], "batch 0 holds 9 records for its 8 samples"),
    (lambda r: r[:1] + r[:7], "batch 0: record 1 is not sample 1 of the batch"),
    (lambda r: [r[0][:5]] + r[1:], "batch 0: record 0 is not sample 0 of the batch"),
    (lambda r: [[*r[0][:2], 9, *r[0][3:]]] + r[1:], "batch 0: record 0 is malformed"),
    (_edited, r"batch 0: its records were edited"),
])
def test_records_that_do_not_fit_their_batch_are_refused(written, tmp_path, change, why):
    path = copy_of(written, tmp_path, _set_records(change))
    with pytest.raises(ValueError, match=rf"the state file '{re.escape(str(path))}' is damaged: {why}"):
        resume(path)


@pytest.mark.parametrize("change,why", [
    (lambda s: s.pop("batches"), "its 'batches' are missing"),
    (lambda s: s["batches"].__setitem__("0", 5), "batch 0 lacks its digest, check or records"),
    (lambda s: s["batches"].__setitem__("first", {}), "batch 'first' is not a batch number"),
    (lambda s: s.__setitem__("identity", []), "its 'identity' is missing"),
    (lambda s: s.__setitem__("seconds", None), "its 'seconds' and 'attacked' must map"),
    (lambda s: s.__setitem__("channels_last", "yes"), "its 'channels_last' or 'autocast'"),
    (lambda s: s["attacked"].pop("square"), "its 'seconds' and 'attacked' name"),
])
def test_a_structurally_damaged_state_file_is_refused_in_one_line(written, tmp_path, change, why):
    path = copy_of(written, tmp_path, change)
    with pytest.raises(ValueError, match=rf"^the state file '{re.escape(str(path))}' is damaged: {why}") as error:
        resume(path)
    assert "\n" not in str(error.value)


def test_resuming_with_another_seed_or_batch_size_says_what_to_pass(written, tmp_path):
    path = copy_of(written, tmp_path)
    with pytest.raises(ValueError, match=r"seed differs \(pass seed=3 as when the state file was written\)"):
        resume(path, seed=None)
    with pytest.raises(ValueError, match=r"batch_size differs \(pass batch_size=8 as when the state file was"):
        resume(path, batch_size=16)
    options = {k: v for k, v in SETTINGS.items() if k != "eps"}
    run = AutoAttackRun(mlp(nn.ReLU()), ThreatModel.build(SETTINGS["eps"]),
                        AutoAttackOptions(**options, state_path=path, resume=True))
    with pytest.raises(ValueError, match=r"batch 0 of the data differs .* \(16 samples here, 8 there: pass the "
                                         "batch size"):
        run.add(X, Y, 0)  # a caller that feeds its own batches (evaluate) is told too


# 7. an empty first batch: the set-up waits for one with samples

def _empty_first_loader():
    def collate(items):
        if not items:
            return torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.int64)
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])
    return DataLoader(TensorDataset(X, Y), batch_sampler=[[], list(range(8)), list(range(8, 16))],
                      collate_fn=collate)


def test_an_empty_first_batch_does_not_decide_the_set_up():
    lwta = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), LWTA(2), nn.Linear(32, 10))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = autoattack(lwta, _empty_first_loader(), eps=0.1, steps=2, seed=0, progress=False, repeats=1)
    assert report.stochastic and report.version == "rand" and report.eot_iter == 20
    assert report.n_samples == 16 and not report.probabilities
    assert not [w for w in caught if "probabilities" in str(w.message)]  # no false warning on 0 rows


# unclear errors made one clear line

@pytest.mark.parametrize("normalization,why", [
    (((0.5,), (0.0,)), "normalization std must be finite and > 0"),
    (((0.5,), (float("nan"),)), "normalization std must be finite and > 0"),
    (((0.5, 0.5, 0.5), (0.2, 0.2, 0.2)),
     r"normalization has 3 values \(one per channel\) but the input has 1 channel: shape \[8"),
])
def test_a_bad_normalization_is_named_not_blamed_on_the_model(normalization, why):
    with pytest.raises(ValueError, match=f"^{why}") as error:
        autoattack(mlp(nn.ReLU()), (X, Y), normalization=normalization, **SETTINGS)
    assert "\n" not in str(error.value) and "model" not in str(error.value)


# the report: fast's gap, a readable print, one percentage format

NAMES = ["apgd-ce", "apgd-t", "square", "smoothed-pgd"]


def fast_report(after) -> AutoAttackReport:
    row = version_for("fast", "linf")
    return AutoAttackReport("fast", "linf", 0.3, 500, NAMES, Stat(0.9), after, Stat(after[-1]), {}, {},
                            not_autoattack=row.not_autoattack, measured=row.measured)


def test_fast_does_not_quote_its_usual_gap_where_it_found_masking():
    masked, clean = fast_report([0.6, 0.5, 0.42, 0.3]), fast_report([0.6, 0.5, 0.5, 0.5])
    for text in (masked.log(), masked.to_markdown()):
        assert version_for("fast", "linf").measured not in text and "-0.2 to +0.6" not in text
        assert "does not apply here" in text and "many points above standard's" in text
        assert "run version='standard'" in text
    assert all(version_for("fast", "linf").measured in text for text in (clean.log(), clean.to_markdown()))


def test_print_of_a_report_is_a_summary_with_the_fields_kept():
    report = AutoAttackReport("standard", "linf", 8 / 255, 500, NAMES[:3], Stat(0.885), [0.6, 0.575, 0.57],
                              Stat(0.57), {}, {}, robust=[True, False] * 250, classes=10)
    text, line = str(report), repr(report)
    assert len(text.splitlines()) <= 8 and len(line) < 300 and "True" not in text + line
    for part in ("standard", "linf", "0.03137", "500 samples", "88.5%", "57.0%", "after apgd-t: 57.5%"):
        assert part in text, part
    assert line.startswith("AutoAttackReport(version='standard'") and "'57.0%'" in line
    assert len(report.robust) == 500 and report.to_dict()["robust"] == report.robust


def test_the_log_and_table_give_every_percentage_with_one_decimal():
    report = AutoAttackReport("standard", "linf", 0.3, 100, NAMES[:3], Stat(0.885), [0.6, 0.575, 0.5],
                              Stat(0.5), {"apgd-ce": 1.0}, {}, classes=10,
                              individual={"apgd-ce": 0.6, "apgd-t": 0.575, "square": 0.55})
    text = report.log() + report.to_markdown()
    shares = re.findall(r"\d+(?:\.\d+)?%", text)
    assert shares and all(re.fullmatch(r"\d+\.\d%", s) for s in shares), shares
    assert "57.5%" in text and "88.5%" in text


def test_resume_refuses_other_gradient_settings_and_needs_a_state_path(tmp_path):
    from robustkernels.defences import BitDepthReduction

    model = nn.Sequential(BitDepthReduction(bits=2), nn.Flatten(), nn.Linear(64, 10))
    path = tmp_path / "s.json"
    kwargs = dict(eps=0.1, steps=2, n_queries=10, progress=False, seed=1, batch_size=8)
    autoattack(model, (X[:8], Y[:8]), bpda=False, state_path=path, **kwargs)
    with pytest.raises(ValueError, match=r"bpda differs \(pass bpda=False as when the state file was written\)"):
        autoattack(model, (X[:16], Y[:16]), bpda=True, state_path=path, resume=True, **kwargs)
    with pytest.raises(ValueError, match="active_set differs"):
        autoattack(model, (X[:16], Y[:16]), bpda=False, active_set=False, state_path=path, resume=True, **kwargs)
    with pytest.raises(ValueError, match="resume=True continues the run recorded in state_path"):
        autoattack(model, (X[:8], Y[:8]), resume=True, **kwargs)
