"""Command line: robustkernels demo | train | eval | compare | bench | info."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence

from .cli_args import HelpFormatter
from .cli_commands import add_demo, add_eval, add_train
from .cli_compare import add_compare

DESCRIPTION = """Adversarial robustness on fused kernels: attacks, robust training, honest evaluation.

  robustkernels demo      train 4 models on the bundled digits and print their robustness table
  robustkernels train     train a model with a robust training method
  robustkernels eval      robustness report (and AutoAttack) of a trained checkpoint
  robustkernels compare   several training methods on one model: AutoAttack accuracy against training time
  robustkernels bench     our kernels and AutoAttack against the baselines users run
  robustkernels info      versions, CPU, extension and backends

`robustkernels COMMAND --help` lists each command's options with their defaults."""
# What a user can get wrong (arguments, files, data): one line and exit code 2, never a traceback.
USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, OverflowError)


def _triton_version() -> str:
    try:
        import triton
    except Exception as exc:  # not installed, or broken install
        return f"not available ({type(exc).__name__})"
    mode = "interpreter (TRITON_INTERPRET=1)" if os.environ.get("TRITON_INTERPRET") == "1" else "compiled"
    return f"{triton.__version__}, {mode}"


def _nvcc_version() -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return "not found"
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{nvcc} (cannot run: {exc})"
    release = [line for line in out.splitlines() if "release" in line]
    return f"{release[-1].strip() if release else 'unknown version'} ({nvcc})"


def info_lines() -> list[str]:
    """What ``robustkernels info`` prints: versions, threads, extension and backends per device."""
    import torch

    import robustkernels
    from robustkernels import _backend, _extension, machine

    cuda = torch.version.cuda or "none (CPU build of torch)"
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        cuda += f", {torch.cuda.device_count()} device(s): {torch.cuda.get_device_name(0)}"
    else:
        cuda += ", no CUDA device"
    extension = "built and loaded" if _extension.LOADED else f"NOT loaded ({_extension.REASON})"
    if _extension.LOADED:
        extension += ", with CUDA kernels" if _extension.CUDA_BUILT else ", CPU kernels only"
    lines = [
        f"robustkernels {robustkernels.__version__}",
        f"python        {platform.python_version()} ({sys.executable})",
        f"torch         {torch.__version__}",
        f"triton        {_triton_version()}",
        f"CUDA          {cuda}",
        f"nvcc          {_nvcc_version()}",
        f"machine       {machine.describe()}",
        f"extension     {extension}",
        f"backend       {_backend.requested_backend()} (set with {_backend.ENV_VAR} or use_backend())",
    ]
    for device in devices:
        names = _backend.available_backends(device)
        chosen = _backend.resolve(device) if _backend.requested_backend() in names + ["auto"] else "unavailable"
        lines.append(f"  {device:<11} available: {', '.join(names)}; ops run on: {chosen}")
    return lines


def _info(_: argparse.Namespace) -> int:
    print("\n".join(info_lines()))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import BENCHES, main_bench

    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    unknown = sorted(set(ops) - set(BENCHES))
    if unknown:
        raise ValueError(f"--ops must be among {','.join(BENCHES)}; got {','.join(unknown)}")
    if args.device == "cuda" and not __import__("torch").cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available on this machine")
    main_bench(args.device, ops, args.quick, args.json, e2e=not args.no_e2e, data_dir=args.data_dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustkernels", description=DESCRIPTION, formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_demo(commands)
    add_train(commands)
    add_eval(commands)
    add_compare(commands)
    info = "versions, CPU and vector ISA, threads, extension and available backends"
    commands.add_parser("info", help=info, description=info, formatter_class=HelpFormatter).set_defaults(run=_info)
    summary = "our kernels vs the formulations users run: ratios, bandwidth, memory; AutoAttack vs torchattacks"
    bench = commands.add_parser("bench", help=summary, description=summary, formatter_class=HelpFormatter)
    bench.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the kernels run")
    bench.add_argument("--ops", default="pgd,lwta,noise",
                       help="comma-separated: pgd,lwta,noise,autoattack (AutoAttack vs torchattacks: minutes)")
    bench.add_argument("--data-dir", default="../shared/data",
                       help="folder holding mnist/ and cifar-10-batches-py/ (for --ops autoattack)")
    bench.add_argument("--quick", action="store_true", help="small sizes; under a minute on 2 CPU cores")
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.add_argument("--no-e2e", action="store_true", help="skip the end-to-end cases")
    bench.set_defaults(run=_bench)
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
