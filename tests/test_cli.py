"""``run_recbole_micro.py`` as users call it: no arguments (the embedded default dataset is built on first
use, in the current directory), ``--resume``, ``recommend --exclude``, and the precedence of the config
layers (model yaml < dataset yaml < ``--config_files`` < ``--key=value``) read back from the run record."""

import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import REPO, run_config, split_history as history, stopped_when_ready
from recbole_micro.checkpoint import load_checkpoint
from recbole_micro.cli import main as cli_main
from recbole_micro.data.default import DEFAULT_DATASET
from recbole_micro.data.locate import ensure_dataset
from recbole_micro.data.synthetic import make_synthetic_dataset
from recbole_micro.report import DEFAULT_KEYS

SCRIPT = str(REPO / "run_recbole_micro.py")
# one optimisation step per epoch keeps a MovieLens-100k epoch at about a second
FAST = ["--epochs=1", "--train_batch_size=131072", "--state=ERROR"]


def run_script(cwd, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in Path(folder).iterdir()}


def test_no_arguments_builds_the_default_dataset_on_first_use(tmp_path):
    first = run_script(tmp_path, *FAST)
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "atomic_data" / DEFAULT_DATASET  # data_path: atomic_data/, relative to where it runs
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{DEFAULT_DATASET}.{suffix}" for suffix in ("train.inter", "valid.inter", "test.inter", "text", "meta", "yaml"))
    lines = first.stdout.strip().splitlines()
    header = next(line for line in lines if line.startswith("MICRO on "))
    assert header.startswith(f"MICRO on {DEFAULT_DATASET} (1 epochs, ")
    checkpoint = tmp_path / header.rsplit("checkpoint ", 1)[1]
    assert checkpoint.parent == tmp_path / "saved" and checkpoint.is_file()
    record = json.loads(checkpoint.with_suffix(".json").read_text())
    assert record["config"]["model"] == "MICRO" and record["config"]["dataset"] == DEFAULT_DATASET
    assert record["config"]["modalities"] == ["text", "meta"]
    table = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines if "@" in line.split()[0]}
    for key, (valid, test) in table.items():  # the printed table is the run's result
        assert valid == pytest.approx(record["result"]["best_valid_result"][key], abs=5e-5), key
        assert test == pytest.approx(record["result"]["test_result"][key], abs=5e-5), key
    assert list(table) == list(DEFAULT_KEYS) and table["recall@20"][1] > 0
    # a second use finds it: nothing is rebuilt
    built = mtimes(folder)
    assert ensure_dataset(DEFAULT_DATASET, str(tmp_path / "atomic_data")) == str(folder)
    assert mtimes(folder) == built and sorted(p.name for p in (tmp_path / "atomic_data").iterdir()) == [DEFAULT_DATASET]


# ------------------------------------------------------------------------------ config precedence, recommend --exclude
SMALL = dict(n_users=40, n_items=50, n_clusters=5, per_user=(6, 10), dims={"image": 12, "text": 6})


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    """One CLI training run whose keys come from four layers; ``(root, result)``."""
    root = tmp_path_factory.mktemp("cli")
    make_synthetic_dataset(str(root), "syn", **SMALL, extra_yaml=[
        "knn_k: 3", "lambda_coeff: 0.7", "n_item_layers: 2", "embedding_size: 16", "weight_size: [16, 16]"])
    config_file = root / "mine.yaml"
    config_file.write_text("knn_k: 4\nlambda_coeff: 0.8\nloss_ratio: 0.05\n")
    return root, cli(layered_argv(root, config_file, "--epochs=2"))


def layered_argv(root, config_file, *extra):
    return ["--model", "MICRO", "--dataset", "syn", "--config_files", str(config_file), "--knn_k=5", f"--data_path={root}",
            f"--checkpoint_dir={root / 'saved'}", "--eval_step=1", "--train_batch_size=4096", "--state=ERROR", *extra]


def cli(argv):
    """``run_recbole_micro.py ARGV`` in this process (the CLI rewrites ``sys.argv`` for RecBole: restored after)."""
    saved, sys.argv = sys.argv, [sys.argv[0]]
    try:
        return cli_main(argv)
    finally:
        sys.argv = saved


def test_config_precedence_dataset_yaml_then_config_files_then_command_line(layered):
    root, result = layered
    config = json.loads(Path(result["record"]).read_text())["config"]
    resolved = {k: config[k] for k in ("knn_k", "lambda_coeff", "loss_ratio", "n_item_layers", "embedding_size",
                                       "weight_size", "learning_rate", "temperature", "epochs")}
    assert resolved == {
        "knn_k": 5,               # dataset yaml 3 < config file 4 < --knn_k=5
        "lambda_coeff": 0.8,      # dataset yaml 0.7 < config file 0.8
        "loss_ratio": 0.05,       # MICRO.yaml 0.03 < config file
        "n_item_layers": 2,       # MICRO.yaml 1 < dataset yaml 2
        "embedding_size": 16,     # MICRO.yaml 64 < dataset yaml 16
        "weight_size": [16, 16],
        "learning_rate": 0.0005,  # MICRO.yaml, untouched
        "temperature": 0.5,
        "epochs": 2,              # plugin overall.yaml 1000 < --epochs=2
    }
    # ... and the model was built with them
    state = load_checkpoint(result["checkpoint"])["state_dict"]
    assert state["item_embedding.weight"].shape == (SMALL["n_items"] + 1, 16)
    assert result["epochs_run"] == 2


def recommended(checkpoint, capsys, *extra):
    cli_main(["recommend", "--checkpoint", checkpoint, "--users", "1,2,3", "--topk", "1000", *extra])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "user\trank\titem\tscore"
    items = defaultdict(list)
    for line in out[1:]:
        user, _, item, _ = line.split("\t")
        items[user].append(item)
    return items


def test_recommend_exclude_train_or_train_and_valid(layered, capsys):
    root, result = layered
    train, valid = history(root, "train"), history(root, "valid")
    catalogue = {str(i) for i in range(SMALL["n_items"])}
    default = recommended(result["checkpoint"], capsys)
    train_only = recommended(result["checkpoint"], capsys, "--exclude", "train")
    both = recommended(result["checkpoint"], capsys, "--exclude", "train+valid")
    assert default == train_only and sorted(both) == ["1", "2", "3"]
    for user in ("1", "2", "3"):
        assert valid[user] and not valid[user] & train[user]
        assert set(train_only[user]) == catalogue - train[user]  # every unseen item, validation ones included
        assert set(both[user]) == catalogue - train[user] - valid[user]
        assert both[user] == [i for i in train_only[user] if i not in valid[user]]  # same order, valid removed
    with pytest.raises(SystemExit) as info:
        cli_main(["recommend", "--checkpoint", result["checkpoint"], "--users", "1", "--exclude", "everything"])
    assert info.value.code == 2 and "invalid choice: 'everything'" in capsys.readouterr().err



def test_resume_from_the_last_checkpoint_ends_where_the_uninterrupted_run_did(layered, capsys):
    """``--resume=<model>-<time>-last.pth`` with the same arguments: the remaining epoch only, into the
    run's best file, with the uninterrupted run's results (same seed, config and data)."""
    root, result = layered
    last = result["checkpoint"][:-4] + "-last.pth"
    assert load_checkpoint(last)["epoch"] == 0  # written at the start of epoch 1 of the 2
    capsys.readouterr()
    resumed = cli(layered_argv(root, root / "mine.yaml", "--epochs=2", f"--resume={last}"))
    out = capsys.readouterr()
    assert resumed["epochs_run"] == 1 and resumed["checkpoint"] == result["checkpoint"]
    assert resumed["best_valid_result"] == result["best_valid_result"]
    assert resumed["test_result"] == result["test_result"]
    assert "MICRO on syn (1 epochs, " in out.out


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                 (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_stopped_training_run_is_one_line_naming_its_resume_point(tmp_path, signum, code, word):
    """Ctrl-C or SIGTERM while training: no traceback, exit status 128 + signal, one last line naming the resume
    point; the command it gives continues the run to the end."""
    make_synthetic_dataset(str(tmp_path), "syn", n_users=60, n_items=80, n_clusters=6, per_user=(5, 8))
    overrides = [f"--{k}={v}" for k, v in run_config(tmp_path, epochs=100000, eval_step=1, stopping_step=100000,
                                                      last_checkpoint_step=1).items()]
    stopped = stopped_when_ready([SCRIPT, "--model", "BPR", "--dataset", "syn", *overrides], tmp_path,
                                 "saved/*-last.pth", signum)
    assert stopped.returncode == code and "Traceback" not in stopped.stderr
    last_line = stopped.stderr.strip().splitlines()[-1]
    (resume_point,) = [str(p) for p in (tmp_path / "saved").glob("*-last.pth")]
    assert last_line == f"run_recbole_micro.py train: {word}; continue with --resume {resume_point}"
    epoch = load_checkpoint(resume_point)["epoch"]
    finished = run_script(tmp_path, "--model", "BPR", "--dataset", "syn", "--resume", resume_point,
                          *[o for o in overrides if not o.startswith("--epochs=")], f"--epochs={epoch + 3}")
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"BPR on syn ({epoch + 3 - (epoch + 1)} epochs," in finished.stdout


@pytest.mark.parametrize("argv, part", [
    (["recommend", "--checkpoint", "x.pth", "--users", "1", "--exclude", "everything"], "invalid choice: 'everything'"),
    (["tune", "--algo", "grid"], "invalid choice: 'grid'"),
    (["compare", "--seeds"], "--seeds: expected one argument"),
    (["--epochs"], "--epochs"),
])
def test_usage_errors_are_one_line(argv, part, capsys):
    """argparse's own errors (a bad choice, a missing value) end like every bad input: one line, exit status 2."""
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and ": error: " in err and part in err, err
