"""Progress bars for long work: tqdm on a terminal, silent when stderr is piped to a log."""

from __future__ import annotations

from collections.abc import Iterable

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs) -> tqdm:
    """A ``tqdm`` bar that shows only if ``enabled`` and stderr is a terminal (tqdm's
    ``disable=None``), so a piped log gets no carriage-return updates."""
    return tqdm(iterable, disable=None if enabled else True, dynamic_ncols=True, **kwargs)
