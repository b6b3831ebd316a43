"""One progress bar for every loop of gclib (training, caches, the metrics' own networks).

A bar in a notebook is an ipywidget, and every refresh sends the front end about three messages. ZeroMQ drops
messages once about 2000 wait unread (the kernel's and the reader's queues of 1000 each), and nbval reads a cell's
output only when the cell has finished: at tqdm's default 10 refreshes a second, one minute of training filled
1500 of them on 2 cores, and on a slower machine the lost messages included the one that says the cell is done
(nbval then failed with "Timeout ... waiting for output"). One refresh a second is plenty for a person and keeps a
ten-minute cell within the queue. ``set_postfix`` (the losses beside a training bar) waits for that refresh too:
tqdm's own redraws the bar at every call, i.e. at every training step.
"""
from __future__ import annotations

import functools
from typing import Iterable

from tqdm.auto import tqdm

REFRESH_SECONDS = 1.0


def progress_bar(iterable: Iterable, desc: str, disable: bool = False, **kwargs) -> tqdm:
    """``tqdm(iterable)`` refreshed at most once per ``REFRESH_SECONDS`` (the notebook widget in Jupyter, text
    elsewhere), whose ``set_postfix`` is shown at the next refresh. Extra keyword arguments go to tqdm (``total``,
    ``initial``, ``file``...)."""
    kwargs.setdefault("mininterval", REFRESH_SECONDS)
    bar = tqdm(iterable, desc=desc, disable=disable, **kwargs)
    bar.set_postfix = functools.partial(bar.set_postfix, refresh=False)
    return bar
