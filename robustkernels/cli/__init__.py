"""Command line: robustkernels demo | train | eval | compare | merge | bench | info, one module per
command (its options and its run) over the argument types of :mod:`robustkernels.cli.args`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .args import HelpFormatter
from .bench import add_bench
from .compare import add_compare
from .demo import add_demo
from .eval import add_eval
from .info import add_info
from .merge import add_merge
from .train import add_train

DESCRIPTION = """Adversarial robustness on fused kernels: attacks, robust training, honest evaluation.

  robustkernels demo      train 4 models on the bundled digits and print their robustness table
  robustkernels train     train a model with a robust training method
  robustkernels eval      robustness report (and AutoAttack) of a trained checkpoint
  robustkernels compare   several training methods on one model: AutoAttack accuracy against training time
  robustkernels merge     one AutoAttack report from the state files of its shards
  robustkernels bench     our kernels and AutoAttack against the baselines users run
  robustkernels info      versions, CPU, extension and backends

`robustkernels COMMAND --help` lists each command's options with their defaults."""
# What a user can get wrong (arguments, files, data): one line and exit code 2, never a traceback.
USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, OverflowError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustkernels", description=DESCRIPTION, formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_demo, add_train, add_eval, add_compare, add_merge, add_info, add_bench):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and exc.filename not in message:
            message = f"{exc.filename}: {message}"
        print(f"robustkernels {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
