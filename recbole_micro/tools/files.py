"""Helpers every tool shares: atomic text writes, JSON-plain values, config-file lists, timestamps."""

import contextlib
import datetime
import os
import shlex

from recbole_micro.errors import Busy

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; jobs sharing a file must then run one at a time
    fcntl = None


def atomic_write(path, text):
    """Write ``text`` to ``path`` through a temporary file and a rename: readers never see half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive advisory lock for the block: read-modify-write of a file that jobs running side by
    side share (the comparison JSON) without losing each other's updates. The lock is taken on the file's
    folder (``flock`` on a directory), so no lock file is left behind; a removed lock file could not be
    shared safely (a job waiting on the removed one and a job creating a new one would both hold "the lock")."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if fcntl is None:
        yield
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing the last descriptor releases the lock


@contextlib.contextmanager
def claimed(path, busy_message):
    r"""Hold ``<path>.lock`` for the block, or raise ``errors.Busy(busy_message)`` at once when another process
    holds it (a non-blocking ``flock``): one writer per file that a whole job owns (a tuning export, a run's
    checkpoint). The lock
    file is removed at the end; a claim taken on a lock file that was removed meanwhile is retried on the new
    one, so two processes never both hold the claim."""
    lock_path = f"{path}.lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    if fcntl is None:
        yield
        return
    while True:
        handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise Busy(busy_message) from None
        try:
            same = os.fstat(handle).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(handle)  # the holder removed it between our open and our lock: claim the new one
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock_path)  # while still held: a waiting opener then sees a removed file and retries
        os.close(handle)


def plain(value):
    """JSON-safe copy: numpy scalars → Python numbers, tuples → lists, unknowns → str."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return str(value)


def config_file_list(value):
    """Absolute paths of ``--config_files`` (a comma/space-separated string or a list); None when empty."""
    if not value:
        return None
    if isinstance(value, (list, tuple)):
        return [os.path.abspath(v) for v in value]
    return [os.path.abspath(v) for v in value.replace(",", " ").split()]


def now():
    """The local time, to the second, as ISO text."""
    return datetime.datetime.now().isoformat(timespec="seconds")


def command_line(prog, argv):
    """``python <prog> <argv...>`` quoted for a shell: the command that reproduces a run."""
    return "python " + " ".join([prog] + [shlex.quote(a) for a in (argv or [])])


def short(value):
    """A parameter value for one-line listings (floats to 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def params_text(params):
    """``k=v, k=v`` of a parameter dict."""
    return ", ".join(f"{k}={short(v)}" for k, v in params.items())


def one_line(error, limit=300):
    """``Type: message`` of an exception on one line (whitespace collapsed, at most ``limit`` characters)."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
