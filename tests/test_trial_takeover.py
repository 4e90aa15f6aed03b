"""A tuning trial taken over as the comparison's run at the tuned point on the search's seed
(``tools.trial_run``): the same numbers and per-user values as training that run again, without training it;
anything that makes it another run (a value, the seed, the checkpoint, the score) trains as before."""

import glob
import json
import os

import numpy as np
import pytest

from conftest import run_config
from recbole_micro.quick_start import record_path
from recbole_micro.tools import compare
from recbole_micro.tools.cli import compare_main
from recbole_micro.tools.results import load_per_user, load_results, model_runs
from recbole_micro.tools.search import tune_model

SMALL = dict(n_users=80, n_items=100, n_clusters=8, per_user=(6, 10))
SEARCH_SEED = 123


@pytest.fixture
def searched(tmp_path, synthetic):
    """A real two-point BPR search on synthetic data (seed 123, 3 epochs): ``(name, export path, overrides)``."""
    name = synthetic("syn", **SMALL)
    grid = tmp_path / "grid.hyper"
    grid.write_text("learning_rate choice [0.0005, 0.05]\n")
    overrides = run_config(tmp_path, epochs=3, eval_step=1, seed=SEARCH_SEED)
    out = tmp_path / "tune" / "BPR-syn"
    tune_model("BPR", name, str(grid), "exhaustive", output_file=str(out), overrides=overrides)
    overrides.pop("seed")
    return name, str(out) + ".json", overrides


def compared(searched, out, seeds=(SEARCH_SEED,), **kwargs):
    name, export, overrides = searched
    doc = compare.run_comparison(name, "BPR", tuned=export, overrides=dict(overrides, **kwargs.pop("extra", {})),
                                 out=str(out), seeds=list(seeds), **kwargs)
    return {run["seed"]: run for run in model_runs(doc, "BPR")}


def seed_checkpoints(tmp_path, seed):
    return glob.glob(str(tmp_path / "saved" / f"BPR-seed{seed}-*.pth"))


def test_the_search_seeds_run_is_its_trial_and_equals_training_it_again(searched, tmp_path, capsys):
    export = json.loads(open(searched[1]).read())
    trial = export["trials"][export["best"]["trial"] - 1]

    taken = compared(searched, tmp_path / "taken", seeds=(SEARCH_SEED, 7))
    run = taken[SEARCH_SEED]
    assert run["from_trial"] == {"source": searched[1], "trial": trial["trial"]}
    assert not seed_checkpoints(tmp_path, SEARCH_SEED)  # not trained: no checkpoint of its own
    assert run["checkpoint"] == trial["checkpoint"]
    assert (run["valid"], run["test"], run["best_epoch"], run["epochs_run"]) == (
        trial["valid"], trial["test"], trial["best_epoch"], trial["epochs_run"])
    assert "is this run (same seed and configuration): taken over" in capsys.readouterr().out
    assert "from_trial" not in taken[7] and seed_checkpoints(tmp_path, 7)  # another seed: trained

    retrained = compared(searched, tmp_path / "retrained", retrain=True)[SEARCH_SEED]
    assert "from_trial" not in retrained and seed_checkpoints(tmp_path, SEARCH_SEED)
    record = json.loads(open(record_path(trial["checkpoint"])).read())["result"]
    assert (run["train_seconds"], run["seconds_per_epoch"]) == (record["train_seconds"], record["seconds_per_epoch"])
    for key in ("valid", "test", "best_valid_score", "best_epoch", "epochs_run", "hyper", "settings", "epoch_budget"):
        assert run[key] == retrained[key], key
    mine = load_per_user(str(tmp_path / "taken"), run)
    again = load_per_user(str(tmp_path / "retrained"), retrained)
    assert list(mine["users"]) == list(again["users"])
    for metric in ("recall@20", "ndcg@20"):
        np.testing.assert_array_equal(mine[metric], again[metric])
        assert np.mean(mine[metric]) == pytest.approx(run["test"][metric], abs=5e-5)

    page = (tmp_path / "taken" / "syn.md").read_text()
    assert f"seed {SEARCH_SEED}: that trial itself" in page
    assert "that trial itself" not in (tmp_path / "retrained" / "syn.md").read_text()


def _export_without_checkpoints(trial, tmp_path):  # as a Ray search's export may be
    path = tmp_path / "tune" / "BPR-syn.json"
    doc = json.loads(path.read_text())
    for entry in doc["trials"]:
        entry["checkpoint"] = None
    path.write_text(json.dumps(doc))


def _remove_checkpoint(trial, tmp_path):
    os.remove(trial["checkpoint"])


def _drop_a_recorded_key(trial, tmp_path):  # a trial run before the plugin had the key
    path = record_path(trial["checkpoint"])
    record = json.loads(open(path).read())
    del record["config"]["tie_break"]
    open(path, "w").write(json.dumps(record))


def _damage_the_record(trial, tmp_path):
    path = record_path(trial["checkpoint"])
    record = json.loads(open(path).read())
    record["result"]["epochs_run"] = "many"
    open(path, "w").write(json.dumps(record))


def _alter_recorded_test(trial, tmp_path):
    path = record_path(trial["checkpoint"])
    record = json.loads(open(path).read())
    record["result"]["test_result"]["recall@20"] += 0.01
    open(path, "w").write(json.dumps(record))


@pytest.mark.parametrize("change, extra, note", [
    (None, {"stopping_step": 4}, "it ran with other values of stopping_step"),
    (_drop_a_recorded_key, {}, "its run record predates the keys tie_break"),
    (_remove_checkpoint, {}, "is gone"),
    (_damage_the_record, {}, "holds no valid 'epochs_run'"),
    (_export_without_checkpoints, {}, "the export names no checkpoint of it"),
    (_alter_recorded_test, {}, "the trial recorded"),
])
def test_a_trial_that_is_not_this_run_is_not_taken_over(searched, tmp_path, capsys, change, extra, note):
    export = json.loads(open(searched[1]).read())
    trial = export["trials"][export["best"]["trial"] - 1]
    if change:
        change(trial, tmp_path)
    run = compared(searched, tmp_path / "out", extra=extra)[SEARCH_SEED]
    assert run["status"] == "ok" and "from_trial" not in run and seed_checkpoints(tmp_path, SEARCH_SEED)
    err = capsys.readouterr().err
    assert f"trial {trial['trial']} of {searched[1]} is not taken over (" in err and note in err and "): trained" in err


def test_retrain_on_the_command_line_trains_the_run(searched, tmp_path, capsys):
    name, export, overrides = searched
    argv = ["--dataset", name, "--models", "BPR", "--seeds", str(SEARCH_SEED), "--tuned", export,
            "--out", str(tmp_path / "out"), "--retrain"] + [f"--{k}={v}" for k, v in overrides.items()]
    compare_main(argv)
    run = model_runs(load_results(str(tmp_path / "out" / "syn.json")), "BPR")[0]
    assert "from_trial" not in run and seed_checkpoints(tmp_path, SEARCH_SEED)
    assert "taken over" not in capsys.readouterr().out
