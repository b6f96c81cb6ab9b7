"""``robustkernels compare --protocol fastat``: the FastAT Benchmark's recipe on this machine
(library logic in :mod:`robustkernels.recipes.fastat`)."""

from __future__ import annotations

import json
import os
import statistics
import sys
from dataclasses import asdict

from .args import device as parse_device
from .args import end_distributed, first_process


def _seeds(text: str | None) -> tuple[int, ...]:
    if text is None:
        return (0, 1, 2)
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: expected distinct integers >= 0")
    return seeds


def _split(args, train, test):
    """(train, held-out validation, test to score) as the protocol sizes them."""
    from ..data import take

    n_train = len(train[1]) if isinstance(train, tuple) else len(train)
    held = args.val_samples or (500 if args.dataset.startswith("cifar") else 1000)
    if held >= n_train:
        raise ValueError(f"--val-samples {held}: the training set has only {n_train} images")
    used = min(n_train - held, args.train_samples or n_train)  # the first images train, the last are held out
    scored = args.eval_samples or 1000
    return take(train, 0, used), take(train, n_train - held), take(test, 0, scored)


TIMING_FILE = "timing.json"  # in --out: the timing pass's seconds per epoch, which the table then uses


def run_fastat(args) -> int:
    from .. import machine
    from ..recipes import fastat
    from ..recipes.compare import autoattack_scorer
    from .args import eps_for, load_data
    from .modelspec import build_for, check_fits

    if args.normalization is not None:
        raise ValueError("--protocol fastat trains on inputs in [0, 1] as the benchmark does: leave --normalization "
                         "out")
    fixed = {"--schedule": args.schedule, "--keep": args.keep, "--val-attack": args.val_attack}
    for flag_name, value in fixed.items():
        if value is not None:
            raise ValueError(f"{flag_name}: --protocol fastat fixes it (onecycle, best-robust by validation PGD-10): "
                             "leave it out")
    labels = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else list(fastat.METHODS)
    if args.weight_average is not None and not any(m.endswith("+wa") for m in labels):
        raise ValueError("--weight-average sets the tau of the +wa rows: --methods has none")
    device, eps, seeds = parse_device(args.device), eps_for(args), _seeds(args.seeds)
    recipe = fastat.Recipe(epochs=args.epochs, eps=eps, augment=args.dataset in ("cifar10", "cifar100") and
                           not args.no_augment, auto_levers=args.auto_levers, seeds=seeds, batch_size=args.batch_size,
                           lr=args.lr, eps_warmup_epochs=args.eps_warmup_epochs,
                           **({} if args.weight_average is None else {"tau": args.weight_average}))
    for label in labels:
        fastat.method_for(label, recipe)  # a bad label fails before the data is read
    train, test = load_data(args)
    train, val, test = _split(args, train, test)
    version = args.aa_version or "standard"
    scorer = autoattack_scorer(eps, samples=None, seed=0, version=version)

    def make_model(seed: int):
        return build_for(args, test, seed)[0].to(device)

    check_fits(make_model(0), test, None)
    n = [len(d[1]) if isinstance(d, tuple) else len(d) for d in (train, val, test)]
    head = fastat.header(recipe, model=args.model, data=args.dataset, train_size=n[0], val_size=n[1], test_size=n[2],
                         aa=f"AutoAttack {version}", machine=f"{machine.describe()}, device {device}")
    if first_process():
        print(head, flush=True)

    if args.timing:
        return _timing_pass(args, make_model, labels, recipe, train)
    results = fastat.run_protocol(make_model, labels, recipe, train, val, lambda m: scorer(m, test)[:2], args.out,
                                  progress=not args.no_progress, on_run=_say, machine=machine.describe())
    end_distributed()
    if not first_process():  # torchrun: every process holds the same results; the first writes
        return 0
    _write_outputs(args, head, results, recipe)
    return 0


def _say(run) -> None:
    """One run's line on stderr (the first process's)."""
    if first_process():
        print(f"{run.label} seed {run.seed}: clean {100 * run.clean:.1f}%, AutoAttack {100 * run.robust:.1f}%, "
              f"trained {run.epochs} epochs in {run.train_seconds:.0f} s (kept epoch {run.kept_epoch})",
              file=sys.stderr, flush=True)


def _write_outputs(args, head: str, results, recipe) -> None:
    """The table (printed, fastat.md, fastat.json), the front figure and the curves into --out."""
    from ..data import NUM_CLASSES
    from ..recipes import fastat
    from ..recipes.fastat_curves import plot_curves

    per_epoch, timing = _read_timing(args.out)
    rows = fastat.summarize(results, classes=NUM_CLASSES.get(args.dataset, 10), per_epoch=per_epoch)
    table = fastat.to_markdown(rows, timing)
    print("\n" + table)
    with open(os.path.join(args.out, "fastat.md"), "w") as f:
        f.write(head + "\n\n" + table + "\n")
    with open(os.path.join(args.out, "fastat.json"), "w") as f:
        json.dump({"header": head, "rows": [asdict(r) for r in rows]}, f, indent=1)
    figure = fastat.plot(rows, os.path.join(args.out, "fastat.png"), f"{args.model} on {args.dataset}")
    curves = plot_curves(results, os.path.join(args.out, "fastat-curves.png"), f"{args.model} on {args.dataset}",
                         recipe.eps_warmup_epochs)
    print(f"wrote {os.path.join(args.out, 'fastat.md')}, fastat.json, {figure}"
          + (f" and {curves}" if curves else ""), file=sys.stderr)


def _timing_pass(args, make_model, labels, recipe, train) -> int:
    """Each method's seconds per epoch (``fastat.epoch_seconds``) into ``--out/timing.json``."""
    from .. import machine
    from ..common import progress_bar
    from ..recipes import fastat

    path = os.path.join(args.out, TIMING_FILE)
    samples: dict[str, list[float]] = {label: [] for label in labels}
    jobs = [(r, label) for r in range(fastat.TIMING_ROUNDS) for label in (labels if r % 2 == 0 else labels[::-1])]
    for r, label in progress_bar(jobs, desc="timing", enabled=not args.no_progress):
        samples[label] += fastat.epoch_seconds(make_model, label, recipe, train)
        if r + 1 < fastat.TIMING_ROUNDS:
            continue
        per_epoch = {k: statistics.median(v) for k, v in samples.items() if len(v) == len(samples[label])}
        epochs = fastat.method_for(label, recipe)[1]
        print(f"{label}: {per_epoch[label]:.2f} s per epoch (median of {len(samples[label])}), {epochs} epochs: "
              f"{per_epoch[label] * epochs:.0f} s", flush=True)
        with open(path, "w") as f:
            json.dump({"machine": machine.describe(), "epochs": fastat.TIMING_EPOCHS, "rounds": fastat.TIMING_ROUNDS,
                       "seconds_per_epoch": per_epoch}, f, indent=1)
    print(f"wrote {path}: the protocol's table takes its training times from it", file=sys.stderr)
    return 0


def _read_timing(out: str) -> tuple[dict | None, str | None]:
    """(label -> seconds per epoch, where they come from) of ``out/timing.json``, or (None, None)."""
    path = os.path.join(out, TIMING_FILE)
    if not os.path.isfile(path):
        return None, None
    with open(path) as f:
        timing = json.load(f)
    per_epoch = timing.get("seconds_per_epoch") if isinstance(timing, dict) else None
    if not (isinstance(per_epoch, dict) and all(isinstance(v, (int, float)) for v in per_epoch.values())):
        raise ValueError(f"{path}: not a timing file of compare --protocol fastat --timing")
    rounds = timing.get("rounds", 1)
    return per_epoch, (f"a separate timing pass ({TIMING_FILE}: the median seconds per epoch of epochs 2-"
                       f"{timing.get('epochs')} of each method over {rounds} rounds, times its epochs) on "
                       f"{timing.get('machine')}, not the runs' own clocks")
