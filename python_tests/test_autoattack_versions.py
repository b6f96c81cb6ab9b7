"""AutoAttack as the original offers it beyond the fixed versions: ``version="custom"`` with a list
of attacks, individual evaluation (every attack on every point), and the original's sanity
checks (probabilities instead of logits, Square beating the white-box attacks)."""

import pytest
from torch import nn

from robustkernels.cli import main
from robustkernels.defences import BitDepthReduction
from robustkernels.eval import AutoAttackReport, Stat, autoattack

from .models import trained_digits_cnn

FAST = dict(steps=10, n_queries=200, seed=0, progress=False)


def test_custom_version_runs_the_listed_attacks_in_order():
    model, x, y = trained_digits_cnn()
    report = autoattack(model, (x[:40], y[:40]), eps=0.1, version="custom", attacks=["square", "apgd-ce"], **FAST)
    assert report.version == "custom" and report.attacks == ["square", "apgd-ce"]
    assert report.attacked["square"] >= report.attacked["apgd-ce"]  # the cascade: apgd-ce sees what square left
    for bad, match in ((["apgd-ce", "pgd"], "distinct names among"), ([], "distinct names among"),
                       (["fab", "fab"], "distinct names among")):
        with pytest.raises(ValueError, match=match):
            autoattack(model, (x[:8], y[:8]), eps=0.1, version="custom", attacks=bad, **FAST)
    with pytest.raises(ValueError, match="attacks= lists the attacks of version='custom'"):
        autoattack(model, (x[:8], y[:8]), eps=0.1, version="standard", attacks=["apgd-ce"], **FAST)


def test_individual_runs_every_attack_on_every_point():
    model, x, y = trained_digits_cnn()
    x, y = x[:60], y[:60]
    report = autoattack(model, (x, y), eps=0.1, individual=True, **FAST)
    cascade = autoattack(model, (x, y), eps=0.1, **FAST)
    assert set(report.individual) == set(report.attacks) and not cascade.individual
    assert all(report.attacked[name] == round(report.clean_accuracy.mean * 60) for name in report.attacks)
    for acc in report.individual.values():  # each attack alone leaves at least the points robust to all
        assert report.robust_accuracy.mean <= acc + 1e-9 <= report.clean_accuracy.mean + 1e-9
    assert min(report.individual.values()) >= report.robust_accuracy.mean
    assert "robust accuracy of APGD-CE alone" in report.log()


def test_probabilities_instead_of_logits_are_warned_about():
    model, x, y = trained_digits_cnn()
    probabilities = nn.Sequential(model, nn.Softmax(dim=1))
    with pytest.warns(UserWarning, match="probabilities, not logits"):
        report = autoattack(probabilities, (x[:20], y[:20]), eps=0.1, version="custom", attacks=["apgd-ce"], **FAST)
    assert report.probabilities and any("probabilities" in w for w in report.warnings())
    assert not autoattack(model, (x[:20], y[:20]), eps=0.1, version="custom", attacks=["apgd-ce"], **FAST).probabilities


def test_square_beating_the_white_box_attacks_is_a_masking_sign():
    """A quantising front-end without BPDA gives the white-box attacks no gradient: Square then
    fools points they could not, and the log says so."""
    model, x, y = trained_digits_cnn()
    masked = nn.Sequential(BitDepthReduction(3), model)
    report = autoattack(masked, (x[:60], y[:60]), eps=0.2, bpda=False, version="custom",
                        attacks=["apgd-ce", "square"], **FAST)
    assert report.robust_after[1] < report.robust_after[0]
    assert any("Square (gradient-free) fooled" in w for w in report.warnings())
    honest = AutoAttackReport("standard", "linf", 0.1, 10, ["apgd-ce", "square"], Stat(0.9), [0.5, 0.5], Stat(0.5),
                              {}, {})
    assert not any("Square" in w for w in honest.warnings())


def test_eval_command_takes_custom_and_individual(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--method", "standard", "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    code = main(["eval", "--checkpoint", str(run / "checkpoint.pt"), "--samples", "30", "--attacks", "fgsm",
                 "--no-checks", "--no-progress", "--suite", "autoattack", "--version", "custom", "--aa-attacks",
                 "apgd-ce,square", "--individual"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "AutoAttack (custom)" in out.out


def test_eval_command_sets_the_precision_inside_the_attacks(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--method", "standard", "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    base = ["eval", "--checkpoint", str(run / "checkpoint.pt"), "--samples", "20", "--attacks", "fgsm", "--no-checks",
            "--no-progress", "--suite", "autoattack", "--version", "fast", "--channels-last", "off"]
    for precision, shown in (("fp32", False), ("bf16", True)):
        assert main(base + ["--autocast", precision]) == 0
        out = capsys.readouterr().out
        assert ("bf16 autocast in APGD and smoothed PGD, fp32 verdicts" in out) == shown, out
