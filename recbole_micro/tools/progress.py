r"""Progress of a long run on stdout (hours each on a CPU): for a comparison run, RecBole's per-epoch log
records turned into one short line per epoch and per validation; for a tuning trial (trained quietly,
as RecBole's ``objective_function`` does), one line per validation from the trainer's ``callback_fn``."""

import contextlib
import logging
import re
import time

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TRAIN = re.compile(r"epoch (\d+) training \[time: ([\d.]+)s, (.*)\]")
_VALID = re.compile(r"epoch (\d+) evaluating \[time: ([\d.]+)s, valid_score: ([-\d.eE+naif]+)\]")


class ProgressLines(logging.Handler):
    """Turns RecBole's per-epoch log records into one short stdout line per epoch (and per validation)."""

    def __init__(self, prefix, budget, valid_metric):
        super().__init__(logging.INFO)
        self.prefix, self.budget, self.valid_metric = prefix, budget, valid_metric

    def emit(self, record):
        try:
            message = _ANSI.sub("", record.getMessage())
        except Exception:  # noqa: BLE001 - a progress line must never break training
            return
        match = _TRAIN.search(message)
        if match:
            epoch, seconds, losses = match.groups()
            print(f"{self.prefix} epoch {int(epoch) + 1}/{self.budget}: {float(seconds):.2f} s, {losses}", flush=True)
            return
        match = _VALID.search(message)
        if match:
            epoch, _, score = match.groups()
            print(f"{self.prefix} epoch {int(epoch) + 1}: valid {self.valid_metric} {float(score):.4f}", flush=True)


@contextlib.contextmanager
def epoch_lines(prefix, budget, valid_metric):
    """While the block trains: one stdout line per epoch and per validation, prefixed with ``prefix``."""
    root = logging.getLogger()
    level = root.level
    handler = ProgressLines(prefix, budget, valid_metric)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def validation_lines(prefix, valid_metric):
    """A RecBole ``callback_fn`` (called after each validation): one line with the epoch, the valid value and
    the time since the run started."""
    start = time.time()

    def callback(epoch_idx, valid_score):
        print(f"{prefix} epoch {epoch_idx + 1}: valid {valid_metric} {float(valid_score):.4f} "
              f"({time.time() - start:.0f} s)", flush=True)

    return callback
