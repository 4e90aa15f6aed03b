"""Security, round 3 (issue 25): RecBole's own pickle caches, paths taken from shared files, run-defining keys
in search spaces and tuning exports, unique checkpoint names, diverged models.

Every crafted file here would create a marker file if it were unpickled; every test asserts the marker is
never created, and that a victim file outside the folders the user named is unchanged.
"""

import json
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
from recbole.data import utils as recbole_data_utils

from conftest import run_config, train_on_synthetic
from recbole_micro.cli import main as cli_main
from recbole_micro.config import Config
from recbole_micro.errors import CheckpointError, ConfigError
from recbole_micro.quick_start import build, load_data_and_model, run_recbole_micro
from recbole_micro.recommend import recommend

SMALL = dict(n_users=30, n_items=40, n_clusters=4, per_user=(6, 9), dims={"image": 8, "text": 4})
CACHE_PATH_KEYS = ("dataset_save_path", "dataloaders_save_path")
CACHE_SWITCHES = ("save_dataset", "save_dataloaders")


class Call:
    """Pickles as the call ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def evil_pickle(path, marker):
    """A pickle at ``path`` whose loading creates ``marker``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(pickle.dumps(Call(os.system, f"touch {marker}")))
    return str(path)


def one_line(message, *parts):
    assert "\n" not in str(message).strip(), message
    for part in parts:
        assert part in str(message), (part, str(message))


def cli_error(capsys, argv):
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch BPR run on a generated dataset: (root, best checkpoint)."""
    def train(root):
        config = run_config(root, epochs=1, eval_step=1, train_batch_size=256)
        return run_recbole_micro(model="BPR", dataset="syn", config_dict=config)["checkpoint"]

    return train_on_synthetic(tmp_path_factory, "paths", SMALL, train)


def with_config(src, dst, **changes):
    """A copy of checkpoint ``src`` (data only) whose stored config has ``changes``."""
    state = torch.load(src, weights_only=True)
    state["config"].update(changes)
    torch.save(state, dst, pickle_protocol=2)
    return str(dst)


# ------------------------------------------------------------------------------ 1. RecBole's pickle caches
def plant_default_caches(folder, marker, models=("BPR", "MICRO")):
    """Pickles under every default cache name RecBole 1.2.1 looks for in ``folder``."""
    names = [f"syn-{c}.pth" for c in ("Dataset", "MultimodalDataset", "SequentialDataset", "KnowledgeBasedDataset")]
    names += [f"syn-for-{m}-dataloader.pth" for m in models]
    return [evil_pickle(Path(folder) / n, marker) for n in names]


def test_control_recbole_itself_unpickles_a_file_lying_in_checkpoint_dir(trained, tmp_path):
    """The planted files are real attacks: RecBole's own loaders run them."""
    root, _ = trained
    marker = tmp_path / "marker"
    plant_default_caches(tmp_path / "saved", marker)
    config = Config("BPR", "syn", config_dict=run_config(root, checkpoint_dir=str(tmp_path / "saved"), modalities=[]))
    with pytest.raises(Exception):
        recbole_data_utils.load_split_dataloaders(config)  # unpickles, runs the payload, then fails on its result
    assert marker.exists()


@pytest.mark.parametrize("model,modalities", [("BPR", []), ("BPR", None), ("MICRO", None)])
def test_files_lying_in_checkpoint_dir_are_never_unpickled(trained, tmp_path, model, modalities):
    root, _ = trained
    marker = tmp_path / "marker"
    saved = tmp_path / "saved"
    plant_default_caches(saved, marker)
    extra = {} if modalities is None else {"modalities": modalities}
    config, _, _, (train_data, valid_data, test_data) = build(
        model, "syn", config_dict=run_config(root, checkpoint_dir=str(saved), **extra))
    assert len(train_data.dataset) > 0 and len(test_data.dataset) > 0  # built from the atomic files
    assert not marker.exists()


def test_load_and_recommend_ignore_caches_lying_in_the_recorded_checkpoint_dir(trained, tmp_path):
    root, best = trained
    marker = tmp_path / "marker"
    recorded = torch.load(best, weights_only=True)["config"]["checkpoint_dir"]
    planted = plant_default_caches(recorded, marker)
    try:
        results = recommend(best, ["0", "1"], topk=3)
        assert [len(r["items"]) for r in results] == [3, 3]
        load_data_and_model(best)
    finally:
        for path in planted:
            os.remove(path)
    assert not marker.exists()


def _sources(tmp_path, root, key, value):
    """``{source: (config_file_list, config_dict, argv, expected source text)}`` setting ``key`` to ``value``."""
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(f"{key}: {json.dumps(value)}\n")
    base = run_config(root)
    return {
        "config_dict": (None, dict(base, **{key: value}), [], "config_dict"),
        "yaml": ([str(yaml_file)], base, [], str(yaml_file)),
        "command_line": (None, base, [f"--{key}={value}"], "command line"),
    }


@pytest.mark.parametrize("source", ["config_dict", "yaml", "command_line"])
@pytest.mark.parametrize("key", CACHE_PATH_KEYS + CACHE_SWITCHES)
def test_cache_keys_are_refused_from_every_source(trained, tmp_path, monkeypatch, source, key):
    root, _ = trained
    marker = tmp_path / "marker"
    value = evil_pickle(tmp_path / "evil.pth", marker) if key in CACHE_PATH_KEYS else True
    files, config_dict, argv, where = _sources(tmp_path, root, key, value)[source]
    monkeypatch.setattr(sys, "argv", [sys.argv[0], *argv])
    with pytest.raises(ConfigError) as info:
        build("BPR", "syn", config_file_list=files, config_dict=config_dict)
    one_line(info.value, where, f"config key '{key}'", "never reads or writes RecBole's dataset/dataloader caches",
             "remove it")
    assert not marker.exists()


def test_cache_key_in_the_datasets_own_yaml_is_refused(tmp_path, synthetic):
    marker = tmp_path / "marker"
    evil = evil_pickle(tmp_path / "evil.pth", marker)
    synthetic("syn", **SMALL, extra_yaml=[f"dataloaders_save_path: {evil}"])
    with pytest.raises(ConfigError) as info:
        build("BPR", "syn", config_dict=run_config(tmp_path))
    one_line(info.value, str(tmp_path / "syn" / "syn.yaml"), "'dataloaders_save_path'", "remove it")
    assert not marker.exists()


def test_cli_train_refuses_a_cache_key_with_one_line(trained, tmp_path, capsys):
    root, _ = trained
    marker = tmp_path / "marker"
    evil = evil_pickle(tmp_path / "evil.pth", marker)
    err = cli_error(capsys, ["--model", "BPR", "--dataset", "syn", f"--data_path={root}",
                             f"--checkpoint_dir={tmp_path}", f"--dataset_save_path={evil}"])
    one_line(err, "command line", "'dataset_save_path'")
    assert not marker.exists()


@pytest.mark.parametrize("key", CACHE_PATH_KEYS + CACHE_SWITCHES)
def test_checkpoint_whose_config_sets_a_cache_key_is_refused(trained, tmp_path, capsys, key):
    root, best = trained
    marker = tmp_path / "marker"
    value = evil_pickle(tmp_path / "evil.pth", marker) if key in CACHE_PATH_KEYS else True
    crafted = with_config(best, tmp_path / "crafted.pth", **{key: value})
    expected = (f"checkpoint {crafted} refused: its stored config", f"'{key}'")
    for attempt in (lambda: recommend(crafted, ["0"], topk=2), lambda: load_data_and_model(crafted),
                    lambda: load_data_and_model(crafted, data_path=root)):
        with pytest.raises(ConfigError) as info:
            attempt()
        one_line(info.value, *expected)
    one_line(cli_error(capsys, ["recommend", "--checkpoint", crafted, "--users", "0"]), *expected)
    assert not marker.exists()


def test_ldiffrec_item_embedding_file_is_read_as_arrays_only(tmp_path):
    """RecBole's LDiffRec ``np.load(<data folder>/item_emb.npy, allow_pickle=True)``: an object array (a pickle)
    lying in the data folder is refused by numpy instead of unpickled; a plain array still loads."""
    import numpy as np

    from recbole_micro.utils import get_model

    module = sys.modules[get_model("LDiffRec").__module__]
    marker = tmp_path / "marker"
    evil = tmp_path / "item_emb.npy"
    np.save(evil, np.array([Call(os.system, f"touch {marker}")], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        module.np.load(evil, allow_pickle=True)
    assert not marker.exists()
    np.save(tmp_path / "plain.npy", np.arange(6.0).reshape(2, 3))
    assert module.np.load(tmp_path / "plain.npy", allow_pickle=True).tolist() == [[0, 1, 2], [3, 4, 5]]


# ------------------------------------------------------------------------------ 3. run-defining keys in files
RUN_DEFINING = {"model": "['BPR']", "dataset": "['other']", "data_path": "['elsewhere']", "checkpoint_dir": "['victim']",
                "seed": "[1, 2, 3]", "benchmark_filename": "[['train', 'valid', 'test']]", "save_dataset": "[True]",
                "dataloaders_save_path": "['evil']", "pre_model_path": "['evil']", "ip": "['attacker']",
                "log_wandb": "[True]"}


@pytest.mark.parametrize("key", sorted(RUN_DEFINING))
def test_search_space_setting_a_run_defining_key_is_refused(trained, tmp_path, key):
    from recbole_micro.tools.search import tune_model

    root, _ = trained
    space = tmp_path / "evil.hyper"
    space.write_text(f"learning_rate choice [0.01]\n{key} choice {RUN_DEFINING[key]}\n")
    out = tmp_path / "export"
    overrides = [f"--data_path={root}", f"--checkpoint_dir={tmp_path / 'saved'}", "--state=ERROR", "--epochs=1"]
    with pytest.raises(ConfigError) as info:
        tune_model("MICRO", "syn", params_file=str(space), output_file=str(out), overrides=overrides)
    one_line(info.value, str(space), f"'{key}' cannot be set by a search space or tuning export",
             f"--{key}=")
    assert not (tmp_path / "saved").exists() and not Path(f"{out}.json").exists()  # nothing trained


@pytest.mark.parametrize("key,value", [("model", "BPR"), ("seed", 7), ("checkpoint_dir", "victim"),
                                       ("dataset", "syn"), ("save_dataloaders", True), ("port", 5678)])
def test_tuning_export_setting_a_run_defining_key_is_refused(trained, tmp_path, key, value):
    from recbole_micro.tools.compare import run_comparison
    from recbole_micro.tools.export import FORMAT

    root, _ = trained
    export = tmp_path / "MICRO-syn.json"
    export.write_text(json.dumps({"format": FORMAT, "model": "MICRO", "dataset": "syn", "trials": [
        {"params": {"learning_rate": 0.01, key: value}, "status": "ok", "best_valid_score": 0.2}]}))
    out = tmp_path / "results"
    with pytest.raises(ConfigError) as info:
        run_comparison("syn", "MICRO", tuned=str(export), out=str(out),
                       overrides=[f"--data_path={root}", f"--checkpoint_dir={tmp_path / 'saved'}", "--state=ERROR"])
    one_line(info.value, str(export), f"'{key}' cannot be set by a search space or tuning export")
    assert not out.exists() and not (tmp_path / "saved").exists()


# ------------------------------------------------------------------------------ 2. paths taken from shared files
PRECIOUS = b"precious: must stay unchanged"


def victim_file(path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(PRECIOUS)
    return path


def last_copy(best, path, **changes):
    """A ``-last`` resume point made from checkpoint ``best`` with fields ``changes``."""
    state = torch.load(best, weights_only=True)
    state.update(kind="last", epoch=0, **changes)
    torch.save(state, path, pickle_protocol=2)
    return str(path)


def test_resume_writes_beside_the_file_given_never_where_best_checkpoint_points(trained, tmp_path, capsys):
    root, best = trained
    victim = victim_file(tmp_path / "elsewhere" / "victim.pth")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    last = last_copy(best, run_dir / "BPR-x-last.pth", best_checkpoint=str(victim))
    result = run_recbole_micro("BPR", "syn", config_dict=run_config(root, checkpoint_dir=str(run_dir), epochs=2,
                                                                     eval_step=1, train_batch_size=256), resume=last)
    assert result["checkpoint"] == str(run_dir / "BPR-x.pth") and result["start_epoch"] == 1
    assert torch.load(result["checkpoint"], weights_only=True)["epoch"] == 1
    assert victim.read_bytes() == PRECIOUS
    # the command line: same rule
    last = last_copy(best, run_dir / "BPR-y-last.pth", best_checkpoint=str(victim))
    capsys.readouterr()
    cli_main(["--model", "BPR", "--dataset", "syn", f"--data_path={root}", f"--checkpoint_dir={run_dir}",
              "--state=ERROR", "--epochs=2", "--train_batch_size=256", "--resume", last])
    assert f"checkpoint {run_dir / 'BPR-y.pth'}" in capsys.readouterr().out
    assert victim.read_bytes() == PRECIOUS


def test_a_resume_point_not_named_last_is_refused(trained, tmp_path, capsys):
    root, best = trained
    victim = victim_file(tmp_path / "victim.pth")
    renamed = last_copy(best, tmp_path / "renamed.pth", best_checkpoint=str(victim))
    err = cli_error(capsys, ["--model", "BPR", "--dataset", "syn", f"--data_path={root}",
                             f"--checkpoint_dir={tmp_path}", "--state=ERROR", "--resume", renamed])
    one_line(err, f"checkpoint {renamed} is a resume point", "rename it to <name>-last.pth")
    assert victim.read_bytes() == PRECIOUS


def results_doc(dataset="syn", runs=None, order=None):
    from recbole_micro.tools.results import FORMAT

    runs = runs or {}
    return {"format": FORMAT, "dataset": dataset, "order": order if order is not None else list(runs),
            "seeds": [2020], "runs": runs, "commands": []}


@pytest.mark.parametrize("case", ["dataset", "row", "model", "order", "per_user"])
def test_results_json_names_never_choose_where_from_json_reads_or_writes(tmp_path, capsys, case):
    victim = victim_file(tmp_path / "victim.md")
    run = {"model": "BPR", "seed": 2020, "status": "ok", "valid": {}, "test": {}, "best_valid_score": 0.1}
    doc = {
        "dataset": results_doc("../victim", {"BPR": {"2020": run}}),
        "row": results_doc(runs={"../../victim": {"2020": run}}),
        "model": results_doc(runs={"BPR": {"2020": dict(run, model="../victim")}}),
        "order": results_doc(runs={"BPR": {"2020": run}}, order=["BPR", "../victim"]),
        "per_user": results_doc(runs={"BPR": {"2020": dict(run, per_user={"file": "../../victim.npz"})}}),
    }[case]
    source = tmp_path / "in" / "shared.json"
    source.parent.mkdir()
    source.write_text(json.dumps(doc))
    out = tmp_path / "out" / "page"
    err = cli_error(capsys, ["compare", "--from-json", str(source), "--out", str(out)])
    one_line(err, str(source), "the file is damaged or crafted")
    assert victim.read_bytes() == PRECIOUS and not out.exists()


def test_compare_resume_never_continues_a_checkpoint_outside_checkpoint_dir(trained, tmp_path):
    from recbole_micro.tools.compare import run_comparison

    root, _ = trained
    victim = victim_file(tmp_path / "victim.pth")
    out = tmp_path / "results"
    out.mkdir()
    for checkpoint in (str(victim), str(tmp_path / "saved" / "BPR-seed2020-x-last.pth"), "../victim.pth"):
        run = {"model": "BPR", "seed": 123, "status": "running", "checkpoint": checkpoint}  # 123: the default seed
        (out / "syn.json").write_text(json.dumps(results_doc(runs={"BPR": {"123": run}})))
        with pytest.raises(ConfigError) as info:
            run_comparison("syn", "BPR", resume=True, out=str(out), overrides=[
                f"--data_path={root}", f"--checkpoint_dir={tmp_path / 'saved'}", "--state=ERROR", "--epochs=1"])
        one_line(info.value, str(out / "syn.json"), "run BPR seed 123", f"checkpoint {checkpoint!r}",
                 "is not a .pth file in this run's checkpoint_dir")
    assert victim.read_bytes() == PRECIOUS and not (tmp_path / "saved").exists()  # nothing trained


def test_tune_resume_never_continues_a_checkpoint_outside_checkpoint_dir(trained, tmp_path):
    from recbole_micro.tools.search import tune_model

    root, _ = trained
    victim = victim_file(tmp_path / "victim.pth")
    space = tmp_path / "lr.hyper"
    space.write_text("learning_rate choice [0.01, 0.02]\n")
    stem = str(tmp_path / "tune" / "bpr")
    kwargs = dict(params_file=str(space), output_file=stem, max_evals=1, overrides=[
        f"--data_path={root}", f"--checkpoint_dir={tmp_path / 'saved'}", "--state=ERROR", "--epochs=1",
        "--train_batch_size=256"])
    doc = tune_model("BPR", "syn", **kwargs)
    assert [t["status"] for t in doc["trials"]] == ["ok"]
    doc["running"] = {"params": {"learning_rate": 0.02}, "checkpoint": str(victim)}
    Path(stem + ".json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as info:
        tune_model("BPR", "syn", resume=True, **dict(kwargs, max_evals=2))
    one_line(info.value, f"tuning export {stem}.json", f"checkpoint {str(victim)!r}", "checkpoint_dir")
    assert victim.read_bytes() == PRECIOUS


@pytest.mark.parametrize("key,value", [("benchmark_filename", ["train", "../../victim", "test"]),
                                       ("additional_feat_suffix", ["../victim"])])
def test_file_name_parts_from_a_checkpoint_config_are_plain_names(trained, tmp_path, key, value):
    root, best = trained
    crafted = with_config(best, tmp_path / "crafted.pth", **{key: value})
    with pytest.raises(ConfigError) as info:
        load_data_and_model(crafted)
    one_line(info.value, f"config key '{key}'", "plain names")


# ------------------------------------------------------------------------------ 4. one checkpoint per run
# a process that waits for the start signal, claims the name and prints what it got
CLAIM = """import os, sys, time
from recbole_micro.checkpoint import claim_checkpoint
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
print(claim_checkpoint(sys.argv[1]))"""


def test_runs_started_in_the_same_second_get_their_own_checkpoints(trained, tmp_path, monkeypatch):
    import recbole.trainer.trainer as recbole_trainer

    root, _ = trained
    monkeypatch.setattr(recbole_trainer, "get_local_time", lambda: "Dec-04-2026_12-00-00")  # the same second
    config = run_config(root, checkpoint_dir=str(tmp_path / "saved"), epochs=1, train_batch_size=256)
    first = run_recbole_micro("BPR", "syn", config_dict=config)
    second = run_recbole_micro("BPR", "syn", config_dict=config)
    names = [os.path.basename(r["checkpoint"]) for r in (first, second)]
    assert names == ["BPR-Dec-04-2026_12-00-00.pth", "BPR-Dec-04-2026_12-00-00-2.pth"]
    assert all(os.path.isfile(r["checkpoint"]) for r in (first, second))
    records = [json.loads(Path(r["record"]).read_text())["result"]["checkpoint"] for r in (first, second)]
    assert records == [first["checkpoint"], second["checkpoint"]]


def test_claims_racing_in_parallel_processes_are_all_distinct(tmp_path):
    import subprocess
    import sys
    import time

    path, go = str(tmp_path / "saved" / "MICRO-seed123-Dec-04-2026_12-00-00.pth"), tmp_path / "go"
    # separate interpreters (a forked pool inherits whatever an earlier test started, Ray's signal handlers
    # included), all released by one file so that their claims race
    racers = [subprocess.Popen([sys.executable, "-c", CLAIM, path, str(go)], stdout=subprocess.PIPE, text=True)
              for _ in range(4)]
    time.sleep(1.0)
    go.write_text("")
    names = [racer.communicate(timeout=120)[0].strip() for racer in racers]
    assert len(set(names)) == 4 and names.count(path) == 1
    assert sorted(os.listdir(tmp_path / "saved")) == sorted(os.path.basename(n)[:-4] + ".json" for n in names)


def test_compare_checkpoint_names_are_unique_within_a_second(tmp_path, monkeypatch):
    from recbole_micro.tools import compare

    monkeypatch.setattr(compare.time, "strftime", lambda fmt: "Dec-04-2026_12-00-00")
    config = {"checkpoint_dir": str(tmp_path)}
    names = [compare._checkpoint_name(config, "MICRO", 123) for _ in range(3)]
    assert [os.path.basename(n) for n in names] == [
        "MICRO-seed123-Dec-04-2026_12-00-00.pth", "MICRO-seed123-Dec-04-2026_12-00-00-2.pth",
        "MICRO-seed123-Dec-04-2026_12-00-00-3.pth"]


def test_unwritable_checkpoint_dir_is_one_line(tmp_path):
    from recbole_micro.checkpoint import claim_checkpoint

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError) as info:
        claim_checkpoint(str(blocker / "saved" / "BPR-x.pth"))
    one_line(info.value, f"checkpoint_dir {blocker / 'saved'} cannot be written", "--checkpoint_dir")


# ------------------------------------------------------------------------------ 5. a diverged model
@pytest.mark.parametrize("model", ["BPR", "MICRO"])
def test_diverged_training_stops_with_one_line(trained, tmp_path, capsys, model):
    root, _ = trained
    err = cli_error(capsys, ["--model", model, "--dataset", "syn", f"--data_path={root}",
                             f"--checkpoint_dir={tmp_path / 'saved'}", "--state=ERROR", "--epochs=3",
                             "--train_batch_size=4096", "--learning_rate=1e308"])
    one_line(err, "epoch 0: the weights are no longer finite after the update", "training diverged and stopped",
             "no checkpoint was saved yet", "lower learning_rate (now 1e+308)")
    assert not list((tmp_path / "saved").glob("*.pth"))  # nothing "best" was saved


def test_checkpoint_with_non_finite_weights_is_refused(trained, tmp_path, capsys):
    root, best = trained
    state = torch.load(best, weights_only=True)
    state["state_dict"]["item_embedding.weight"][3, 1] = float("nan")
    crafted = tmp_path / "diverged.pth"
    torch.save(state, crafted, pickle_protocol=2)
    expected = (f"checkpoint {crafted} holds non-finite weights", "parameter 'item_embedding.weight'", "diverged")
    for attempt in (lambda: recommend(crafted, ["0"], topk=3), lambda: load_data_and_model(crafted)):
        with pytest.raises(CheckpointError) as info:
            attempt()
        one_line(info.value, *expected)
    one_line(cli_error(capsys, ["recommend", "--checkpoint", str(crafted), "--users", "0"]), *expected)
    one_line(cli_error(capsys, ["--model", "BPR", "--dataset", "syn", f"--data_path={root}",
                                f"--checkpoint_dir={tmp_path}", "--state=ERROR", "--resume", str(crafted)]), *expected)


@pytest.mark.parametrize("line", ["checkpoint_dir: /tmp/victim-folder", "data_path: /elsewhere", "model: BPR",
                                  "ip: attacker.example", "log_wandb: True"])
def test_the_datasets_own_yaml_cannot_decide_where_the_run_writes(tmp_path, synthetic, line):
    synthetic("syn", **SMALL, extra_yaml=[line])
    with pytest.raises(ConfigError) as info:
        build("MICRO", "syn", config_dict=run_config(tmp_path))
    one_line(info.value, str(tmp_path / "syn" / "syn.yaml"), f"sets '{line.split(':')[0]}'", "remove it")
    assert not Path("/tmp/victim-folder").exists() and not (tmp_path / "saved").exists()
