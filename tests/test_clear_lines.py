"""Issue 25, items 6-12: tracebacks, unclear lines and silently wrong results that became one clear line
or correct behaviour, and progress of long loads and epochs.

Library calls raise a ``RecboleMicroError`` whose one-line message is checked; command-line cases must exit
2 with one ``error:`` line and no traceback.
"""

import argparse
import csv
import json
import logging
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from conftest import REPO, assert_cli_error, check, message, run_config, split_history, train_on_synthetic
from recbole_micro.checkpoint import last_checkpoint
from recbole_micro.commands import recommend_action
from recbole_micro.config import Config
from recbole_micro.data.convert import convert_lattice
from recbole_micro.errors import CheckpointError, ConfigError
from recbole_micro.quick_start import run_recbole_micro
from recbole_micro.recommend import UnknownUserError, recommend
from recbole_micro.tools.cli import compare_main
from recbole_micro.tools.files import locked
from recbole_micro.progress import EpochProgress, heartbeat
from recbole_micro.tools.space import read_hyper_file
from recbole_micro.utils import create_dataset

SMALL = dict(n_users=40, n_items=50, n_clusters=4, per_user=(5, 8), dims={"image": 8, "text": 4})


@pytest.fixture
def syn(synthetic):
    return synthetic("syn", **SMALL)


def run_cli(*args, script="run_recbole_micro.py"):
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


# ------------------------------------------------------------------------------------------ 6. yaml tags
def test_python_tag_in_a_config_file_is_one_line(tmp_path, syn):
    marker = tmp_path / "ran"
    config_file = tmp_path / "run.yaml"
    config_file.write_text(f"epochs: 1\nfoo: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError) as info:
        Config(model="BPR", dataset=syn, config_file_list=[str(config_file)], config_dict=run_config(tmp_path))
    check(message(info), str(config_file), "tag '!!python/object/apply:os.system' at line 2, column 6",
          "nothing was run", "remove the tag")
    assert not marker.exists()


@pytest.mark.parametrize("line, tag, column", [
    ("x: !!python/name:os.system", "!!python/name:os.system", 4),
    ("x: [1, !!python/tuple [2]]", "!!python/tuple", 8),
    ("x: {a: !custom 1}", "!custom", 8),
])
def test_python_tag_in_the_dataset_yaml_is_one_line(tmp_path, syn, line, tag, column):
    path = tmp_path / syn / f"{syn}.yaml"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [line]) + "\n")
    with pytest.raises(ConfigError) as info:
        Config(model="MICRO", dataset=syn, config_dict=run_config(tmp_path))
    check(message(info), str(path), f"dataset yaml has the tag '{tag}' at line {len(lines) + 1}, column {column}")


def test_plain_yaml_tags_are_accepted(tmp_path, syn):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("epochs: !!int 3\nlearning_rate: !!float 1e-3\n")
    config = Config(model="BPR", dataset=syn, config_file_list=[str(config_file)], config_dict=run_config(tmp_path))
    assert config["epochs"] == 3 and config["learning_rate"] == 0.001


# ------------------------------------------------------------------------------------------ 10. BOM
def test_utf8_bom_at_the_start_of_a_hyper_file(tmp_path):
    space = tmp_path / "bom.hyper"
    space.write_bytes("learning_rate choice [0.001, 0.01]\nknn_k choice [5]\n".encode("utf-8-sig"))
    assert space.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert read_hyper_file(str(space)) == {"choice": {"learning_rate": [0.001, 0.01], "knn_k": [5]}}


# ------------------------------------------------------------------------------------------ 7. checkpoint fields
@pytest.fixture(scope="module")
def bpr_run(tmp_path_factory):
    """A 2-epoch BPR run: ``(root, best checkpoint, its -last resume point)``."""
    def train(root):
        config = run_config(root, epochs=2, eval_step=1)
        return run_recbole_micro(model="BPR", dataset="syn", config_dict=config)["checkpoint"]

    root, best = train_on_synthetic(tmp_path_factory, "fields", SMALL, train)
    return root, best, last_checkpoint(best)


def _altered(source, target, edit):
    state = torch.load(source, weights_only=True)
    edit(state)
    torch.save(state, target, pickle_protocol=2)
    return str(target)


def _set(key, value):
    return lambda state: state.__setitem__(key, value)


def _first_parameter_as_text(state):
    state["state_dict"] = dict(state["state_dict"])
    state["state_dict"][next(iter(state["state_dict"]))] = "hello"


FIELD_CASES = [  # (id, edit, expected part of the line)
    ("rng-str", _set("rng", "x"), "field 'rng' is 'x' (a str); it must be a dict of random states"),
    ("rng-python", _set("rng", {"python": 5}), "field 'rng' cannot be restored (TypeError: cannot unpack"),
    ("rng-numpy", _set("rng", {"numpy": (1, 2)}), "field 'rng' cannot be restored (ValueError: not enough values"),
    ("rng-torch-size", _set("rng", {"torch": torch.zeros(3, dtype=torch.uint8)}),
     "field 'rng' cannot be restored (RuntimeError: Expected a CPUGeneratorImplState of size"),
    ("epoch-str", _set("epoch", "five"), "field 'epoch' is 'five' (a str); it must be an integer >= -1"),
    ("epoch-none", _set("epoch", None), "field 'epoch' is None (a NoneType); it must be an integer >= -1"),
    ("optimizer-str", _set("optimizer", "x"), "field 'optimizer' is 'x' (a str); it must be an optimizer state_dict"),
    ("optimizer-groups", _set("optimizer", {"state": {}, "param_groups": "x"}),
     "field 'optimizer' has 'param_groups' 'x' (a str); it must be a list of dicts with integer 'params'"),
    ("data-str", _set("data", "x"), "field 'data' is 'x' (a str); it must be the token ids of the training data"),
    ("data-keys", _set("data", {"users": 3}),
     "field 'data' has 'user_field' None (a NoneType); it must be a field name"),
    ("state_dict-str", _first_parameter_as_text,
     "field 'state_dict' has 'user_embedding.weight' = 'hello' (a str); every parameter must be a tensor"),
    ("other_parameter-str", _set("other_parameter", "x"), "field 'other_parameter' is 'x' (a str)"),
    ("other_parameter-matrix", _set("other_parameter", {"w": {"kind": "scipy sparse", "format": "csr", "stored": "csr",
                                                              "shape": [3, 3], "data": torch.ones(2),
                                                              "indices": torch.zeros(2), "indptr": torch.zeros(2)}}),
     "field 'other_parameter' has 'w' = {'kind': 'scipy sparse'"),
    ("best_valid_score-str", _set("best_valid_score", "x"),
     "field 'best_valid_score' is 'x' (a str); it must be a number"),
]


@pytest.mark.parametrize("edit, expected", [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES])
def test_malformed_checkpoint_field_is_one_line_on_resume_and_recommend(tmp_path, bpr_run, edit, expected):
    root, _best, last = bpr_run
    path = _altered(last, tmp_path / "altered-last.pth", edit)
    before = (tmp_path / "altered-last.pth").read_bytes()
    for action in (lambda: run_recbole_micro(model="BPR", dataset="syn", resume=path,
                                             config_dict=run_config(root, epochs=3, eval_step=1,
                                                                    checkpoint_dir=str(tmp_path / "saved"))),
                   lambda: recommend(path, ["1", "2"], topk=3)):
        with pytest.raises(CheckpointError) as info:
            action()
        check(message(info), f"checkpoint {path}: ", expected, "the file was altered or is corrupt",
              "use another checkpoint or retrain")
    assert (tmp_path / "altered-last.pth").read_bytes() == before  # refused before anything was written
    assert not (tmp_path / "saved").exists()


def test_optimizer_of_other_parameter_groups_is_one_line_on_resume(tmp_path, bpr_run):
    root, _best, last = bpr_run

    def two_groups(state):
        state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"] * 2

    path = _altered(last, tmp_path / "groups-last.pth", two_groups)
    with pytest.raises(CheckpointError) as info:
        run_recbole_micro(model="BPR", dataset="syn", resume=path,
                          config_dict=run_config(root, epochs=3, eval_step=1, checkpoint_dir=str(tmp_path / "s")))
    check(message(info), f"checkpoint {path}: field 'optimizer' does not fit this model's optimizer",
          "different number of parameter groups")


def test_epoch_minus_one_written_by_recbole_is_accepted(tmp_path, bpr_run):
    """RecBole saves epoch -1 when a run starts with no epoch left: a valid checkpoint."""
    _root, best, _last = bpr_run
    path = _altered(best, tmp_path / "minus.pth", _set("epoch", -1))
    assert len(recommend(path, ["1"], topk=3)[0]["items"]) == 3


@pytest.mark.parametrize("command", ["resume", "recommend"])
def test_cli_malformed_checkpoint_field(tmp_path, bpr_run, command):
    root, _best, last = bpr_run
    path = _altered(last, tmp_path / "altered-last.pth", _set("epoch", "five"))
    if command == "resume":
        args = ("--model", "BPR", "--dataset", "syn", f"--data_path={root}", f"--checkpoint_dir={tmp_path / 's'}",
                "--state=ERROR", "--epochs=3", "--resume", path)
    else:
        args = ("recommend", "--checkpoint", path, "--users", "1")
    assert_cli_error(run_cli(*args), f"checkpoint {path}: field 'epoch' is 'five' (a str)")


# ------------------------------------------------------------------------------------------ 8. checkpoint_dir
def _unwritable_folder(tmp_path):
    """A folder this process cannot write into: read-only permissions, or /sys (refused even to root)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return str(folder / "saved"), "Permission denied"
    if not os.path.isdir("/sys/kernel"):
        pytest.skip("running as root without /sys: no folder here is unwritable")
    return "/sys/recbole-micro-test", "Operation not permitted"


def _checkpoint_dir_cases(tmp_path):
    (tmp_path / "a-file").write_text("not a folder\n")
    unwritable, reason = _unwritable_folder(tmp_path)
    return [
        (str(tmp_path / "a-file" / "saved"), f"checkpoint_dir {tmp_path / 'a-file' / 'saved'} cannot be created: "
                                             f"{tmp_path / 'a-file'} is a regular file, not a folder"),
        (str(tmp_path / "a-file"), f"checkpoint_dir {tmp_path / 'a-file'} cannot be created: {tmp_path / 'a-file'} "
                                   f"is a regular file"),
        (unwritable, f"checkpoint_dir {unwritable} cannot be written ({reason})"),
    ]


def test_checkpoint_dir_is_checked_before_any_data_is_loaded(tmp_path, syn, monkeypatch):
    import recbole_micro.quick_start as quick_start

    def no_data(config):
        raise AssertionError("the data was loaded before checkpoint_dir was checked")

    monkeypatch.setattr(quick_start, "create_dataset", no_data)
    for folder, expected in _checkpoint_dir_cases(tmp_path):
        with pytest.raises(ConfigError) as info:
            run_recbole_micro(model="BPR", dataset=syn, config_dict=run_config(tmp_path, checkpoint_dir=folder))
        check(message(info), expected, "pass --checkpoint_dir=<a writable folder>")


def test_cli_checkpoint_dir_through_a_regular_file(tmp_path, syn):
    (tmp_path / "a-file").write_text("x\n")
    folder = tmp_path / "a-file" / "saved"
    assert_cli_error(run_cli("--model", "BPR", "--dataset", syn, f"--data_path={tmp_path}",
                             f"--checkpoint_dir={folder}", "--state=ERROR", "--epochs=1"),
                     f"checkpoint_dir {folder} cannot be created: {tmp_path / 'a-file'} is a regular file")


# ------------------------------------------------------------------------------------------ 9. wide features
def test_converted_12000_dim_features_load(tmp_path):
    """12,000 dims = rows of about 145k characters, beyond Python csv's default field limit (131,072)."""
    from test_convert import N_ITEMS, make_features, write_lattice

    features = np.random.default_rng(5).standard_normal((N_ITEMS, 12000)).astype(np.float32)
    src = write_lattice(tmp_path / "src", features={"image": features, "text": make_features(1, d=3)})
    convert_lattice(str(src), "wide", out=str(tmp_path / "out"))
    row = (tmp_path / "out" / "wide" / "wide.image").read_text().splitlines()[1]
    assert len(row.split("\t")[1]) > csv.field_size_limit() == 131072
    config = Config(model="MICRO", dataset="wide", config_dict=run_config(tmp_path / "out", modalities=["image"]))
    dataset = create_dataset(config)
    matrix = dataset.modality_features["image"]
    assert tuple(matrix.shape) == (dataset.item_num, 12000)
    tokens = dataset.field2id_token[dataset.iid_field][1:]
    assert torch.equal(matrix[1:], torch.from_numpy(features[[int(t) for t in tokens]]))  # %.9g: exact float32
    assert csv.field_size_limit() == 131072  # raised for the read only


# ------------------------------------------------------------------------------------------ progress
def test_epoch_progress_lines_with_a_zero_interval(tmp_path, syn, caplog):
    """``progress_every: 0``: one line after every batch (batch b/n, percent, mean loss since the last line)."""
    config = run_config(tmp_path, epochs=2, eval_step=2, train_batch_size=64, progress_every=0, state="INFO")
    with caplog.at_level(logging.INFO):
        run_recbole_micro(model="BPR", dataset=syn, config_dict=config)
    lines = [r.getMessage() for r in caplog.records if " training: batch " in r.getMessage()]
    batches = -(-len((tmp_path / syn / f"{syn}.train.inter").read_text().splitlines()[1:]) // 64)  # user sampler
    expected = [f"epoch {e} training: batch {b}/{batches} ({100 * b / batches:.0f}%)"
                for e in range(2) for b in range(1, batches + 1)]
    assert [line.split(",")[0] for line in lines] == expected
    assert all(re.search(r", [\d.]+ s, loss 0\.\d{4}$", line) for line in lines), lines


def test_no_progress_lines_by_default_for_short_work(tmp_path, syn, caplog):
    config = run_config(tmp_path, epochs=1, eval_step=1, train_batch_size=64, state="INFO")
    with caplog.at_level(logging.INFO):
        run_recbole_micro(model="BPR", dataset=syn, config_dict=config)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if " training: batch " in m or m.startswith("loading ")]


def test_atom_load_closing_lines_with_a_zero_interval(tmp_path, syn, caplog):
    config = Config(model="MICRO", dataset=syn, config_dict=run_config(tmp_path, progress_every=0))
    with caplog.at_level(logging.INFO):
        create_dataset(config)
    done = [m for m in (r.getMessage() for r in caplog.records) if m.startswith("loading ") and ": done in " in m]
    assert [m.split(" (")[0] for m in done] == [
        f"loading {tmp_path / syn / f'{syn}.{part}'}" for part in ("train.inter", "valid.inter", "test.inter",
                                                                  "image", "text")]
    assert done[3].endswith(f", {SMALL['n_items']} rows")  # every item has an image row


def test_heartbeat_lines_while_a_call_runs():
    """A line every interval while the block runs (a thread), then the closing line: the block waits for two
    heartbeat lines (no timing is asserted)."""
    lines, seen = [], threading.Event()

    def log(line):
        lines.append(line)
        if len(lines) == 2:
            seen.set()

    with heartbeat("loading big.image", 0.001, log=log, done=lambda: "7 rows"):
        assert seen.wait(60)
    assert lines[0].startswith("loading big.image: ") and lines[0].endswith(" s so far")
    assert lines[-1].startswith("loading big.image: done in ") and lines[-1].endswith(" s, 7 rows")
    assert all(line.endswith(" s so far") for line in lines[:-1])


def test_epoch_progress_counts_with_a_fake_clock():
    """Lines when the interval has passed since the last one, with the mean loss of the batches in between."""
    now, lines = [0.0], []
    progress = EpochProgress(3, 10, every=5.0, log=lines.append, clock=lambda: now[0])
    for batch, loss in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], start=1):
        now[0] = 2.0 * batch  # 2 s per batch: lines after batches 3 (6 s) and 6 (12 s)
        progress.step((torch.tensor(loss / 2), torch.tensor(loss / 2)))
    assert lines == ["epoch 3 training: batch 3/10 (30%), 6.0 s, loss 2.0000",
                     "epoch 3 training: batch 6/10 (60%), 12.0 s, loss 5.0000"]


@pytest.mark.parametrize("value", [-1, "fast", True])
def test_bad_progress_every(tmp_path, syn, value):
    config = Config(model="BPR", dataset=syn, config_dict=run_config(tmp_path, progress_every=value))
    with pytest.raises(ConfigError) as info:
        create_dataset(config)
    check(message(info), f"config key 'progress_every' is {value!r}; use seconds >= 0")


# ------------------------------------------------------------------------------------------ 11. failed comparisons
def _compare_args(tmp_path, name, *extra):
    return ["--dataset", name, "--models", "BPR,LightGCN", "--out", str(tmp_path / "results"),
            f"--data_path={tmp_path}", f"--checkpoint_dir={tmp_path / 'saved'}", "--state=ERROR", *extra]


@pytest.mark.parametrize("epochs", ["0", "-3"])
def test_compare_refuses_an_epoch_budget_below_one(tmp_path, syn, capsys, epochs):
    with pytest.raises(SystemExit) as stop:
        compare_main(_compare_args(tmp_path, syn, "--epochs", epochs))
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --epochs is {epochs}; the epoch budget must be an integer >= 1 (0 or less would put untrained "
        f"models on the page)")
    assert not (tmp_path / "results").exists()


def test_compare_exits_2_when_every_run_failed(tmp_path, syn, capsys):
    with pytest.raises(SystemExit) as stop:
        compare_main(_compare_args(tmp_path, syn, "--epochs", "1", "--learning_rate=-1"))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    results = tmp_path / "results"
    assert err == [
        "[compare 1/2] BPR FAILED: config key 'learning_rate' is -1; it must be a number > 0",
        "[compare 2/2] LightGCN FAILED: config key 'learning_rate' is -1; it must be a number > 0",
        f"error: all 2 run(s) of this comparison failed (first: BPR seed 123: ConfigError: config key "
        f"'learning_rate' is -1; it must be a number > 0); {results / f'{syn}.json'} lists every run's error",
    ]
    doc = json.loads((results / f"{syn}.json").read_text())
    assert sorted(run["status"] for runs in doc["runs"].values() for run in runs.values()) == ["failed", "failed"]
    assert not [f for f in os.listdir(results) if f.endswith(".lock")]  # item 12: no lock file left behind


def test_epochs_below_one_refused_for_a_single_run(tmp_path, syn):
    for epochs in (0, -3):
        with pytest.raises(ConfigError) as info:
            run_recbole_micro(model="BPR", dataset=syn, config_dict=run_config(tmp_path, epochs=epochs))
        assert message(info) == f"config key 'epochs' is {epochs}; it must be an integer > 0"


# ------------------------------------------------------------------------------------------ 12. cosmetic
def test_unknown_user_message_shows_plain_tokens(bpr_run):
    _root, best, _last = bpr_run
    with pytest.raises(UnknownUserError) as info:
        recommend(best, ["u0"], topk=3)
    assert message(info) == ("user tokens ['u0'] (1 of 1) are not in dataset 'syn' (40 users, e.g. ['0', '1', '2']); "
                             "pass tokens from the 'user_id' column of its .inter files")


def test_results_folder_holds_no_lock_file_after_a_locked_update(tmp_path):
    path = tmp_path / "syn.json"
    with locked(str(path)):
        path.write_text("{}")
    assert sorted(os.listdir(tmp_path)) == ["syn.json"]


def test_topk_above_the_candidates_warns_once(bpr_run, capsys):
    root, best, _last = bpr_run
    train = split_history(root, "train")
    args = argparse.Namespace(checkpoint=best, users="0,1", topk=100, exclude="train", data_path=None,
                              untrained_item_ids=None)
    results = recommend_action(args, [])
    out, err = capsys.readouterr()
    counts = {r["user"]: len(r["items"]) for r in results}
    assert counts == {u: SMALL["n_items"] - len(train[u]) for u in ("0", "1")}  # every candidate, no more
    assert len(out.strip().splitlines()) == 1 + sum(counts.values())
    fewest = min(counts, key=counts.get)
    assert err.strip() == (f"warning: 2 of 2 users got fewer than topk=100 items (fewest: user '{fewest}', "
                           f"{counts[fewest]} items): only items outside a user's excluded history are candidates")
    args.topk = 3
    recommend_action(args, [])
    assert capsys.readouterr().err == ""
