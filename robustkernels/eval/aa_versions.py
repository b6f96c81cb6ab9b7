"""AutoAttack's versions in one table, version x norm -> its attacks in order, each with its
length, restarts, targets, queries and the survivors it runs on - as the original's
``set_version`` holds a version in one place. Changing a version is editing its row here.

``standard`` = APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000 queries), 100
iterations and one restart each (in L1: APGD with 5 restarts and APGD-T with 5 targets, both on
the 3 / 2 / 1 x eps schedule); ``plus`` = APGD-CE and APGD-DLR with 5 restarts, FAB with 5
restarts, Square, APGD-T, FAB-T; ``rand`` = APGD-CE and APGD-DLR with EOT over 20 passes;
``custom`` = the attacks listed, at the standard settings. ``fast`` is ours and not AutoAttack:
see :mod:`robustkernels.eval.autoattack`, and ``docs/results/benchmarks.md`` for its measured gap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

VERSIONS = ("standard", "plus", "rand", "custom", "fast")
ALL_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")  # what version="custom" may list
NORMS = ("linf", "l2", "l1")


@dataclass(frozen=True)
class Stage:
    """One attack of a version. A length left None is the run's own (``steps``, ``n_queries``,
    ``n_target_classes``: the original's 100, 5000 and 9); a number caps the run's.

    Attributes:
        name: ``apgd-ce``, ``apgd-dlr``, ``apgd-t``, ``fab``, ``fab-t``, ``square`` or ``smoothed-pgd``.
        steps, restarts: iterations (cap) and restarts.
        targets: APGD-T / FAB-T target classes (cap); ``first_target_steps``: APGD-T's first
            target's iterations (cap), None: ``steps``.
        queries: Square's queries (cap).
        largereps: APGD's L1 schedule (3 / 2 / 1 x eps).
        draws: smoothed PGD's noisy copies per step.
        share: runs on this share of a batch's survivors, those with the smallest margin (None: all).
        after: runs only on a batch where this earlier attack fooled a point (None: always).
        rank_at_previous: targets ranked where the attacks before left each point, not at x.
    """

    name: str
    steps: int | None = None
    restarts: int = 1
    targets: int | None = None
    first_target_steps: int | None = None
    queries: int | None = None
    largereps: bool = False
    draws: int = 2
    share: float | None = None
    after: str | None = None
    rank_at_previous: bool = False

    def target_count(self, n_target_classes: int) -> int:
        """The target classes this stage attacks for a run's ``n_target_classes``."""
        return n_target_classes if self.targets is None else min(n_target_classes, self.targets)

    def capped(self, steps: int, n_queries: int, n_target_classes: int) -> Stage:
        """This stage at a run's ``steps``, ``n_queries`` and ``n_target_classes``: every cap
        applied, every length a number - what runs, and what the report says ran."""
        first = self.first_target_steps
        return replace(self, steps=_capped(steps, self.steps), targets=self.target_count(n_target_classes),
                       first_target_steps=None if first is None else _capped(steps, first),
                       queries=_capped(n_queries, self.queries))


def _capped(given: int, cap: int | None) -> int:
    return given if cap is None else min(given, cap)


def stage_targets(stages, n_target_classes: int) -> list[tuple[str, int]]:
    """``(name, target classes)`` of each stage, for the class check before a run."""
    return [(s.name, s.target_count(n_target_classes)) for s in stages]


@dataclass(frozen=True)
class Version:
    """A version in one norm: its stages; ``eot``: EOT-20 ``"always"``, ``"stochastic"`` (for a
    stochastic model) or ``"never"``; ``timed_bf16``: ``autocast="auto"`` times bf16 (else fp32);
    ``not_autoattack``: what it runs instead of AutoAttack, for the report and the log (None:
    AutoAttack's own version)."""

    stages: tuple[Stage, ...]
    eot: str = "never"
    timed_bf16: bool = False
    not_autoattack: str | None = None
    measured: str | None = None  # its gap to standard, from docs/results/benchmarks.md

    def described(self, steps: int, n_queries: int, n_target_classes: int) -> str | None:
        """``not_autoattack`` at a run's lengths (a run's ``steps`` below a stage's cap shortens it)."""
        if self.not_autoattack is None:
            return None
        return describe(tuple(s.capped(steps, n_queries, n_target_classes) for s in self.stages))


# fast's gap to standard as docs/results/benchmarks.md measured it (500 test images, 2-core AMD EPYC;
# the guide has the runs, seeds and times): the report quotes it from here
_MEASURED = {
    "linf": "-0.2 to +0.6 points of standard on four PGD-AT CNNs (MNIST, CIFAR-10), in 1/8 to 1/16 of its time",
    "l2": "+0.0 to +0.4 points of standard on two PGD-AT CNNs (MNIST, CIFAR-10), in 1/12 to 1/20 of its time",
    "l1": ("+0.2 to +1.6 points of standard on two PGD-AT CNNs (MNIST, CIFAR-10), in 1/7 to 1/14 of its time: in L1 "
           "fast is a coarse screen"),
}


def _standard(norm: str) -> dict[str, Stage]:
    """The standard settings of every attack (``custom`` picks among them)."""
    l1 = norm == "l1"
    return {"apgd-ce": Stage("apgd-ce", restarts=5 if l1 else 1, largereps=l1),
            "apgd-dlr": Stage("apgd-dlr", restarts=5 if l1 else 1, largereps=l1),
            "apgd-t": Stage("apgd-t", targets=5 if l1 else None, largereps=l1),
            "fab": Stage("fab", restarts=5 if l1 else 1), "fab-t": Stage("fab-t"), "square": Stage("square")}


def _fast(norm: str) -> Version:
    """fast: APGD-CE, APGD-T on few targets ranked at APGD-CE's end points, Square on the tenth
    of the survivors nearest the boundary as a masking guard, then a last stage (Linf: smoothed
    PGD on every survivor; L2 / L1: APGD-DLR from uniform starts where the guard fooled a point).
    Linf's APGD lengths came from a held-out LeNet whose missed points APGD-T breaks at 100
    iterations, not 50; in L2 / L1 that change measured further from standard (docs/results/benchmarks.md)."""
    linf, l1 = norm == "linf", norm == "l1"
    ce, targets, first = (50, 2, 100) if linf else (100, 3, 50)
    last = (Stage("smoothed-pgd", steps=25, draws=2) if linf else
            Stage("apgd-dlr", steps=25, restarts=4, largereps=l1, after="square"))
    stages = (Stage("apgd-ce", steps=ce, largereps=l1),
              Stage("apgd-t", steps=50, targets=targets, first_target_steps=first, largereps=l1, rank_at_previous=True),
              Stage("square", queries=500, share=0.1), last)
    return Version(stages, eot="stochastic", timed_bf16=True, not_autoattack=describe(stages),
                   measured=f"{_MEASURED[norm]} (docs/results/benchmarks.md)")


def describe(stages: tuple[Stage, ...]) -> str:
    """A version's stages in words (fast's, for its report)."""
    words = {"apgd-ce": "APGD-CE", "apgd-dlr": "APGD-DLR", "apgd-t": "APGD-T", "square": "Square",
             "smoothed-pgd": "smoothed PGD", "fab": "FAB", "fab-t": "FAB-T"}
    parts = []
    for s in stages:
        text = words[s.name]
        if s.name == "apgd-t":
            text += (f" on {s.targets} targets ranked at APGD-CE's end points ({s.first_target_steps} "
                     f"iterations on the first, {s.steps} on the others)")
        elif s.name == "square":
            text += (f" ({s.queries} queries) on the {s.share:.0%} of the survivors nearest to the boundary as a "
                     "masking guard")
        elif s.name == "smoothed-pgd":
            text = (f"then smoothed PGD on every survivor ({s.steps} steps on the margin, its gradient averaged over "
                    f"{s.draws} Gaussian draws of sigma eps/2 around the iterate)")
        elif s.restarts > 1 and s.after:
            text = (f"then APGD-DLR ({s.restarts} x {s.steps} iterations from uniform starts) where the guard fooled "
                    "a point")
        else:
            text += f" ({s.steps} iterations)"
        parts.append(text)
    return ", ".join(parts)


def _row(version: str, norm: str) -> Version:
    std = _standard(norm)
    if version == "standard":
        return Version(tuple(std[n] for n in ("apgd-ce", "apgd-t", "fab-t", "square")))
    if version == "plus":  # the original defines it for Linf and L2; L1 runs these settings (with a warning)
        return Version((Stage("apgd-ce", restarts=5), Stage("apgd-dlr", restarts=5), Stage("fab", restarts=5),
                        Stage("square"), Stage("apgd-t"), Stage("fab-t")))
    if version == "rand":
        return Version((Stage("apgd-ce"), Stage("apgd-dlr")), eot="always")
    if version == "custom":  # the stages come from the caller's list: see version_for
        return Version((), eot="stochastic")
    return _fast(norm)


TABLE = {(version, norm): _row(version, norm) for version in VERSIONS for norm in NORMS}


def version_for(version: str, norm: str, attacks: tuple[str, ...] | None = None) -> Version:
    """The table's row; for ``custom`` the listed ``attacks`` at the standard settings."""
    row = TABLE[(version, norm)]
    if version == "custom":
        std = _standard(norm)
        row = replace(row, stages=tuple(std[name] for name in attacks))
    return row
