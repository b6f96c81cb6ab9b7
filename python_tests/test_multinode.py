"""Multi-node runs: two ``torchrun`` node agents (``--nnodes 2``, one process each) meeting on
127.0.0.1 over gloo run ``train`` and ``compare`` (its FastAT protocol) bit for bit as one node
of two processes does (PGD's random starts are drawn per process, so two processes are not one:
python_tests/test_train_distributed.py checks DDP against one process where the draws agree),
and ``eval`` verdict for verdict as one process does."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32",
                                reason="needs torch.distributed")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}  # two processes on two cores


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(launcher: list[str], argv: list[str], agents: int = 1) -> None:
    """``robustkernels ARGV`` under ``launcher`` in ``agents`` node agents (node ranks 0 ..), each
    waited for; a failure shows its output."""
    port = str(_port())
    procs = []
    for rank in range(agents):
        node = ["--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", port] if agents > 1 else []
        procs.append(subprocess.Popen([*launcher, *node, "-m", "robustkernels", *argv], env=ENV, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outs = [proc.communicate(timeout=600)[0] for proc in procs]
    failed = [f"node {r}:\n{out[-2500:]}" for r, (proc, out) in enumerate(zip(procs, outs)) if proc.returncode]
    assert not failed, "\n".join(failed[::-1])  # the last node's first: a peer's crash closes rank 0's connection


TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TWO_NODES = [*TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1"]
ONE_NODE_TWO = [*TORCHRUN, "--standalone", "--nnodes", "1", "--nproc-per-node", "2"]
ONE = [sys.executable]


def _weights(folder) -> dict:
    from robustkernels.train.checkpoint import load

    return load(str(folder / "checkpoint.pt"))["model"]


def _report(folder) -> dict:
    report = json.loads((folder / "report.json").read_text())
    report.pop("overhead")
    for row in report["attacks"].values():
        row.pop("seconds_per_image")
    report["autoattack"].pop("seconds")
    return report


def test_two_nodes_train_evaluate_and_compare_as_one_process(tmp_path):
    train = ["train", "--method", "pgd-at", "--epochs", "1", "--batch-size", "64",
             "--no-progress"]
    for name, launcher, agents in (("nodes", TWO_NODES, 2), ("node", ONE_NODE_TWO, 1)):
        _run(launcher, [*train, "--out", str(tmp_path / f"train-{name}")], agents)
    nodes, node = (_weights(tmp_path / f"train-{n}") for n in ("nodes", "node"))
    assert nodes.keys() == node.keys() and all(torch.equal(nodes[k], node[k]) for k in node)

    evaluation = ["eval", "--checkpoint", str(tmp_path / "train-nodes" / "checkpoint.pt"), "--samples", "48",
                  "--attacks", "fgsm,pgd", "--check-samples", "20", "--batch-size", "16", "--suite", "autoattack",
                  "--version", "fast", "--channels-last", "off", "--autocast", "fp32", "--no-progress"]
    _run(TWO_NODES, [*evaluation, "--out", str(tmp_path / "eval-nodes")], 2)
    _run(ONE, [*evaluation, "--out", str(tmp_path / "eval-one")])
    nodes, one = _report(tmp_path / "eval-nodes"), _report(tmp_path / "eval-one")
    assert nodes["clean_correct"] == one["clean_correct"]
    assert nodes["autoattack"]["robust"] == one["autoattack"]["robust"]
    assert nodes == one  # verdicts, accuracies, worst case, checks, curves, examples

    compare = ["compare", "--protocol", "fastat", "--dataset", "digits", "--model", "cnn", "--methods", "pgd-at+wa",
               "--eps", "0.1", "--batch-size", "32", "--epochs", "2", "--seeds", "0", "--aa-version", "fast",
               "--eval-samples", "40", "--val-samples", "64", "--no-progress"]
    _run(TWO_NODES, [*compare, "--out", str(tmp_path / "compare-nodes")], 2)
    _run(ONE_NODE_TWO, [*compare, "--out", str(tmp_path / "compare-node")])
    nodes, node = (json.loads((tmp_path / f"compare-{n}" / "fastat.json").read_text())["rows"][0]
                   for n in ("nodes", "node"))
    assert (nodes["clean"], nodes["robust"]) == (node["clean"], node["robust"]) and nodes["clean"] > 0.3
