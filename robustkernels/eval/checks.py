"""Gradient-masking checks (Carlini et al. 2019, "On Evaluating Adversarial Robustness"), each
a pure function of measured accuracies returning pass / warn with the figures behind it."""

from __future__ import annotations

from .values import Check

MASKING_CHECKS = ("iterative >= single-step", "accuracy falls as eps grows", "unbounded eps -> ~0% accuracy",
                  "gradient-free (Square) not stronger", "EOT on vs off")


def percent(v: float) -> str:
    """A share as every report prints it: one decimal (0.575 -> "57.5%")."""
    return f"{100 * v:.1f}%"


_pct = percent  # the checks' short name


def iterative_vs_single_step(acc_iterative: float | None, acc_single: float | None, tol: float) -> Check:
    name = MASKING_CHECKS[0]
    if acc_iterative is None or acc_single is None:
        return Check(name, "n/a", "needs both fgsm and pgd")
    ok = acc_iterative <= acc_single + tol
    return Check(name, "pass" if ok else "warn", f"PGD {_pct(acc_iterative)} vs FGSM {_pct(acc_single)}"
                 + ("" if ok else ": the iterative attack is weaker - gradients are likely masked"))


def monotone_in_eps(curve: dict[float, float], tol: float) -> Check:
    name = MASKING_CHECKS[1]
    if len(curve) < 2:
        return Check(name, "n/a", "no eps sweep")
    points = sorted(curve.items())
    rises = [(a, b, fa, fb) for (a, fa), (b, fb) in zip(points, points[1:]) if fb > fa + tol]
    text = ", ".join(f"{e:.3g}: {_pct(v)}" for e, v in points)
    if not rises:
        return Check(name, "pass", text)
    a, b, fa, fb = rises[0]
    return Check(name, "warn", f"{text}; accuracy rises from eps {a:.3g} to {b:.3g}")


def unbounded_eps(acc_unbounded: float, threshold: float = 0.05) -> Check:
    ok = acc_unbounded <= threshold
    return Check(MASKING_CHECKS[2], "pass" if ok else "warn",
                 f"{_pct(acc_unbounded)} at an eps covering the whole input range"
                 + ("" if ok else f" (> {_pct(threshold)}): the attack cannot follow the gradients"))


def gradient_free_not_stronger(acc_gradient_free: float | None, acc_white_box: float, tol: float) -> Check:
    name = MASKING_CHECKS[3]
    if acc_gradient_free is None:
        return Check(name, "n/a", "Square needs images [B, C, H, W]")
    ok = acc_gradient_free >= acc_white_box - tol
    return Check(name, "pass" if ok else "warn", f"Square {_pct(acc_gradient_free)} vs white-box worst case "
                 f"{_pct(acc_white_box)}" + ("" if ok else ": a black-box attack beats the gradient attacks"))


def eot_helps(stochastic: bool, acc_eot: float | None, acc_no_eot: float | None, eot_iter: int, tol: float) -> Check:
    name = MASKING_CHECKS[4]
    if not stochastic:
        return Check(name, "n/a", "deterministic model")
    if eot_iter == 1:
        return Check(name, "warn", "stochastic model attacked without EOT (eot_iter=1): robust accuracy is likely "
                     "overstated")
    ok = acc_eot <= acc_no_eot + tol
    return Check(name, "pass" if ok else "warn", f"PGD with EOT-{eot_iter} {_pct(acc_eot)} vs without "
                 f"{_pct(acc_no_eot)}" + ("" if ok else ": averaging made the attack weaker; check the defence's "
                                          "gradients or raise eot_iter"))


def above_chance(clean_acc: float, classes: int, n: int) -> Check:
    """Clean accuracy clearly above 1/K (by 3 binomial standard errors and at least 5 points):
    robustness figures of a model that never learned are meaningless, whatever the checks say."""
    chance = 1.0 / classes
    margin = max(3.0 * (chance * (1.0 - chance) / max(n, 1)) ** 0.5, 0.05)
    if chance + margin >= 1.0:  # even 100% would not be clearly above chance
        return Check("clean accuracy above chance", "n/a", f"clean {_pct(clean_acc)} vs chance {_pct(chance)}: "
                     f"{n} samples of {classes} classes are too few to tell")
    ok = clean_acc > chance + margin
    return Check("clean accuracy above chance", "pass" if ok else "warn",
                 f"clean {_pct(clean_acc)} vs chance {_pct(chance)} ({classes} classes, {n} samples)"
                 + ("" if ok else ": the model has not learned the task; its robust accuracies and the other checks "
                    "say nothing"))


def naive_vs_bpda(acc_naive: float, acc_bpda: float, fronts: list[str], tol: float) -> Check:
    """The gap between attacking through a non-differentiable front-end naively and with BPDA:
    the naive figure is what a plain evaluation would have reported."""
    name = "naive vs BPDA"
    ok = acc_bpda <= acc_naive + tol
    detail = (f"PGD with the front-ends' own gradients {_pct(acc_naive)}, through BPDA ({', '.join(fronts)}) "
              f"{_pct(acc_bpda)}; the report's figures use BPDA")
    return Check(name, "pass" if ok else "warn", detail + ("" if ok else ": BPDA is weaker - the identity is a "
                                                                       "poor approximation of this front-end"))


def transfer_not_stronger(acc_transfer: float, acc_white_box: float, tol: float) -> Check:
    """Examples crafted on a surrogate must not beat white-box attacks on the model itself."""
    ok = acc_transfer >= acc_white_box - tol
    return Check("transfer not stronger", "pass" if ok else "warn",
                 f"transfer from the surrogate {_pct(acc_transfer)} vs white-box worst case {_pct(acc_white_box)}"
                 + ("" if ok else ": the model's own gradients mislead the attacks (masking)"))


def certified_below_empirical(acc_certified: float, acc_worst: float, fell: list[int]) -> Check:
    """Sound bounds: no certified sample may fall to an attack, so certified <= worst case. A
    certified sample an attack broke makes the certificate invalid: the check fails."""
    ok = not fell and acc_certified <= acc_worst
    shown = ", ".join(map(str, fell[:20])) + (" ..." if len(fell) > 20 else "")
    return Check("certified <= empirical", "pass" if ok else "fail",
                 f"certified {_pct(acc_certified)} vs worst case {_pct(acc_worst)}, {len(fell)} certified samples "
                 f"fooled" + ("" if ok else f" (samples {shown}): the certificate is INVALID - a bound is unsound or "
                              "the model is not deterministic; report a bug"))
