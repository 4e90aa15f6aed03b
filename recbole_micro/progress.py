r"""Log lines inside long work: a training epoch and the load of an atomic file.

RecBole shows progress only as tqdm bars (``show_progress``, off in the plugin's defaults: bars fill log
files); an epoch of a 2-million-row ``.inter`` then ran two minutes and a 287 MB feature atom loaded for
23 s without a line. The config key ``progress_every`` (seconds) adds log lines at INFO level once work
runs that long:

* ``EpochProgress`` — inside an epoch, after the batch that passes the interval: batch ``b/n``, percent,
  seconds so far and the mean loss of the batches since the last line (one host-device sync per line);
  silent while RecBole's own bars are on (``show_progress: True``).
* ``heartbeat`` — around a call that cannot report by itself (RecBole's ``pandas.read_csv`` of an atom): a
  line every ``progress_every`` seconds from a background thread, and a closing line with the time taken,
  both only when the call ran that long.

``progress_every: 0`` writes a line after every batch and always the closing line of a load; ``~`` none.
"""

import contextlib
import numbers
import threading
import time
from logging import getLogger

from recbole_micro.errors import ConfigError

#: Shortest wait between two heartbeat lines, whatever ``progress_every`` says (0 would spin the thread).
MIN_HEARTBEAT = 0.05


def progress_every(config):
    """``config['progress_every']`` as seconds (float) or None (no lines); one line for a bad value."""
    value = config["progress_every"] if "progress_every" in config else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
        raise ConfigError(f"config key 'progress_every' is {value!r}; use seconds >= 0 between progress lines "
                          f"inside long epochs and loads (0: every batch; ~: none)")
    return float(value)


class EpochProgress:
    """Counts the batches of one epoch and logs a line when ``every`` seconds passed since the last one."""

    def __init__(self, epoch_idx, total, every, log=None, clock=time.monotonic):
        self.epoch_idx, self.total, self.every = epoch_idx, total, every
        self.log = log or getLogger().info
        self.clock = clock
        self.start = self.last = clock()
        self.batches = 0
        self.loss_sum, self.loss_count = 0.0, 0

    def step(self, losses):
        """After each batch: ``losses`` is the batch's loss (a tensor or a tuple of loss terms)."""
        if self.every is None:
            return
        self.batches += 1
        parts = losses if isinstance(losses, tuple) else (losses,)
        self.loss_sum = self.loss_sum + sum(part.detach().float() for part in parts)  # no sync until a line
        self.loss_count += 1
        now = self.clock()
        if now - self.last < self.every:
            return
        loss = float(self.loss_sum) / self.loss_count
        self.loss_sum, self.loss_count = 0.0, 0
        self.last = now
        of = f"/{self.total} ({100.0 * self.batches / self.total:.0f}%)" if self.total else ""
        self.log(f"epoch {self.epoch_idx} training: batch {self.batches}{of}, {now - self.start:.1f} s, "
                 f"loss {loss:.4f}")


def batch_count(loader):
    """Batches per epoch of ``loader``, or None when it cannot tell."""
    try:
        return len(loader)
    except TypeError:
        return None


@contextlib.contextmanager
def heartbeat(what, every, log=None, clock=time.monotonic, done=None):
    r"""While the block runs: ``<what>: <s> s so far`` every ``every`` seconds (a background thread, at
    least ``MIN_HEARTBEAT`` apart), then ``<what>: done in <s> s[, <done()>]`` when it ran at least
    ``every`` seconds. ``every=None``: nothing. ``done``: a callable giving a summary (e.g. the row count)."""
    if every is None:
        yield
        return
    log = log or getLogger().info
    start = clock()
    stop = threading.Event()

    def beat():
        while not stop.wait(max(every, MIN_HEARTBEAT)):
            log(f"{what}: {clock() - start:.1f} s so far")

    thread = threading.Thread(target=beat, name="recbole-micro-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    seconds = clock() - start
    if seconds >= every:
        summary = done() if done else ""
        log(f"{what}: done in {seconds:.1f} s{', ' + summary if summary else ''}")
