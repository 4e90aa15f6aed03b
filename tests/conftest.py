"""Shared fixtures: a clean ``sys.argv`` for RecBole's Config, generated datasets, the shared data."""

import os
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests use small tensors: one intra-op thread avoids oversubscription (measured on a loaded
    2-core machine: 5.5 s with 1 thread vs 100 s with 2 for the same MICRO run). Override with
    RECBOLE_MICRO_TEST_THREADS."""
    previous = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("RECBOLE_MICRO_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def clean_argv(monkeypatch):
    """RecBole's ``Config`` parses ``sys.argv``: keep pytest's own flags out of it."""
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])


def run_config(tmp_path, **overrides):
    """A config dict that keeps every file a run writes inside ``tmp_path`` and logs quietly."""
    config = {
        "data_path": str(tmp_path),
        "checkpoint_dir": str(tmp_path / "saved"),
        "log_wandb": False,
        "state": "ERROR",
        "show_progress": False,
    }
    config.update(overrides)
    return config


def stopped_when_ready(argv, cwd, ready, signum, timeout=180):
    """Run ``argv`` (a script and its arguments) in ``cwd``, send it ``signum`` once a file matching the glob
    ``ready`` exists under ``cwd`` (a run's resume point), and return the finished ``CompletedProcess``."""
    import glob
    import subprocess
    import sys
    import time

    env = dict(os.environ, OMP_NUM_THREADS="1")
    with subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        deadline = time.time() + timeout
        while not glob.glob(os.path.join(str(cwd), ready)) and process.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, f"{argv} ended before {ready} appeared: {process.stderr.read()[-2000:]}"
        time.sleep(0.5)  # inside the training loop
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


@pytest.fixture
def synthetic(tmp_path):
    """Factory: ``synthetic(name, **kw)`` writes a generated dataset under ``tmp_path``; returns its name."""
    from recbole_micro.data.synthetic import make_synthetic_dataset

    def make(name="syn", **kwargs):
        make_synthetic_dataset(str(tmp_path), name, **kwargs)
        return name

    return make


@pytest.fixture
def shared_data():
    """``../shared/data`` (read-only), or a skip with the reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: the real Amazon data is only available beside the repository")
    return SHARED_DATA


def train_on_synthetic(tmp_path_factory, prefix, dataset_kwargs, train):
    """For module-scoped fixtures (``clean_argv`` does not reach them): a fresh directory ``prefix``, a generated
    dataset ``syn`` in it, and ``train(root)`` run with a clean ``sys.argv``; returns ``(root, train(root))``."""
    from recbole_micro.data.synthetic import make_synthetic_dataset

    argv, sys.argv = sys.argv, [sys.argv[0]]
    try:
        root = tmp_path_factory.mktemp(prefix)
        make_synthetic_dataset(str(root), "syn", **dataset_kwargs)
        result = train(root)
    finally:
        sys.argv = argv
    return root, result


def split_history(root, *splits):
    """``{user token: {item tokens}}`` of the synthetic dataset ``syn``'s ``splits`` (read from its atoms)."""
    items = defaultdict(set)
    for split in splits:
        for line in (Path(root) / "syn" / f"syn.{split}.inter").read_text().splitlines()[1:]:
            user, item = line.split("\t")
            items[user].add(item)
    return items


def message(info):
    """The text of a ``pytest.raises`` error that must be one plugin error line (a ``RecboleMicroError``)."""
    from recbole_micro.errors import RecboleMicroError

    text = str(info.value)
    assert text and "\n" not in text, text
    assert isinstance(info.value, RecboleMicroError)
    return text


def check(text, *parts):
    """Every one of ``parts`` is in ``text``."""
    for part in parts:
        assert part in text, (part, text)


def assert_cli_error(result, *parts):
    """A command line refused bad input: exit status 2, one ``error: `` line holding every one of ``parts``, no
    traceback; returns the line."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    check(lines[0], *parts)
    return lines[0]


def benchmark_script(name):
    """The module ``benchmarks/<name>.py``, imported from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script
