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
