"""Stopping a resumable run mid-way: an exception from its data, or SIGKILL as kill -9 would
(shared by the shard tests)."""

import json
import signal
import subprocess
import sys
import time

import torch


class Stop(Exception):
    """What :func:`stopping_at`'s data raise."""


def stopping_at(x, y, stop: int, batch_size: int) -> torch.utils.data.DataLoader:
    """A DataLoader of (x, y) whose sample ``stop`` raises :class:`Stop`: a run fed by it ends
    there, its state file holding the batches done before."""

    class Stopping(torch.utils.data.Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            if i >= stop:
                raise Stop
            return x[i], y[i]

    return torch.utils.data.DataLoader(Stopping(), batch_size=batch_size)


def batches_done(state) -> int:
    """Batches stored in a state file so far (0 while it does not exist or is being replaced)."""
    try:
        return len(json.loads(state.read_text())["batches"])
    except (OSError, ValueError, KeyError):
        return 0


def kill_after(script: str, state, batches: int, timeout: float = 120.0) -> int:
    """Run ``script`` in a new Python process and SIGKILL it once its ``state`` file holds
    ``batches`` batches; the batches done when it died."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while batches_done(state) < batches and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # kill -9, at whatever point it is
    proc.wait()
    return batches_done(state)
