"""Tuning through RecBole's HyperTuning (and Ray Tune): export of all trials, best by validation, Ctrl-C."""

import json
import os

import pytest

from conftest import run_config
from recbole_micro import tuning
from recbole_micro.errors import ConfigError
from recbole_micro.tuning import find_params_file, load_export, read_hyper_file, shipped_spaces, tune_model

SMALL = dict(n_users=80, n_items=100, n_clusters=8, per_user=(6, 10))


def overrides(tmp_path, **extra):
    return run_config(tmp_path, epochs=2, eval_step=1, **extra)


def grid_file(tmp_path, text):
    path = tmp_path / "grid.hyper"
    path.write_text(text)
    return str(path)


def expected_best(trials, bigger=True):
    """The best trial by validation score, computed independently from the export (first of equals)."""
    ok = [t for t in trials if t["status"] == "ok"]
    scores = [t["best_valid_score"] if bigger else -t["best_valid_score"] for t in ok]
    return ok[scores.index(max(scores))]


@pytest.mark.parametrize("model", ["MICRO", "BPR"])
def test_two_point_grid_exports_both_trials_and_best_by_valid(tmp_path, synthetic, model):
    name = synthetic("syn", **SMALL)
    out = tmp_path / "tune" / f"{model}-syn"
    grid = grid_file(tmp_path, "# two learning rates\nlearning_rate choice [0.0005, 0.05]\n")
    doc = tune_model(model, name, grid, "exhaustive", output_file=str(out), overrides=overrides(tmp_path))

    saved = load_export(str(out) + ".json")
    assert saved == json.loads(json.dumps(doc))
    assert saved["status"] == "finished" and saved["model"] == model and saved["algo"] == "exhaustive"
    trials = saved["trials"]
    assert len(trials) == 2
    assert sorted(t["params"]["learning_rate"] for t in trials) == [0.0005, 0.05]
    metric = saved["valid_metric"]
    assert metric == "recall@20" and saved["valid_metric_bigger"] is True
    for trial in trials:
        assert trial["status"] == "ok"
        for split in ("valid", "test"):
            assert {"recall@10", "recall@20", "ndcg@20", "precision@20"} <= set(trial[split])
        assert trial["best_valid_score"] == pytest.approx(trial["valid"][metric])
        assert trial["epochs_run"] == 2 and trial["best_epoch"] in (0, 1)
        assert os.path.isfile(trial["checkpoint"])
    best = expected_best(trials)
    assert saved["best"]["trial"] == best["trial"]
    assert saved["best"]["params"] == best["params"] and saved["best"]["test"] == best["test"]
    text = (tmp_path / "tune" / f"{model}-syn.txt").read_text()
    assert f"* trial {best['trial']}:" in text
    assert f"* best by valid {metric}: trial {best['trial']}" in text


def test_interrupt_keeps_finished_trials(tmp_path, synthetic, monkeypatch, capsys):
    name = synthetic("syn", **SMALL)
    real = tuning.objective_function
    calls = []

    def interrupted_after_first(config_dict, config_file_list=None):
        calls.append(config_dict["learning_rate"])
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(config_dict, config_file_list)

    monkeypatch.setattr(tuning, "objective_function", interrupted_after_first)
    out = tmp_path / "tune" / "micro"
    argv = ["--model", "MICRO", "--dataset", name, "--params_file",
            grid_file(tmp_path, "learning_rate choice [0.001, 0.01, 0.05]\n"), "--output_file", str(out)]
    argv += [f"--{k}={v}" for k, v in overrides(tmp_path).items()]
    with pytest.raises(SystemExit) as stop:
        tuning.main(argv)
    assert stop.value.code == 130
    assert "interrupted" in capsys.readouterr().err

    saved = load_export(str(out) + ".json")
    assert saved["status"] == "interrupted"
    assert len(saved["trials"]) == 1 and len(calls) == 2
    trial = saved["trials"][0]
    assert trial["status"] == "ok" and trial["params"]["learning_rate"] == calls[0]
    assert saved["best"]["trial"] == 1 and "recall@20" in trial["test"]
    assert "* trial 1:" in (tmp_path / "tune" / "micro.txt").read_text()


def test_failed_setting_is_recorded_and_search_goes_on(tmp_path, synthetic):
    name = synthetic("syn", **SMALL)
    out = tmp_path / "tune" / "micro-bad"
    grid = grid_file(tmp_path, "cf_model choice ['no_such_backbone', 'mf']\n")
    doc = tune_model("MICRO", name, grid, output_file=str(out), overrides=overrides(tmp_path))
    by_model = {t["params"]["cf_model"]: t for t in doc["trials"]}
    assert by_model["no_such_backbone"]["status"] == "failed" and by_model["no_such_backbone"]["error"]
    assert by_model["mf"]["status"] == "ok"
    assert doc["best"]["params"] == {"cf_model": "mf"}
    assert "FAILED" in (tmp_path / "tune" / "micro-bad.txt").read_text()


def test_shipped_spaces_name_real_config_keys(tmp_path, synthetic):
    """Every shipped .hyper file parses and searches keys the model's resolved config really has."""
    name = synthetic("syn", **SMALL)
    assert {"MICRO", "LATTICE", "BPR", "LightGCN", "NGCF"} <= set(shipped_spaces())
    assert find_params_file("MICRO") == find_params_file("MICRO.hyper")
    assert find_params_file("MICRO").endswith(os.path.join("hyper", "MICRO.hyper"))
    for model in ("MICRO", "LATTICE", "BPR", "LightGCN", "NGCF"):
        spec = read_hyper_file(find_params_file(model))
        assert set(spec) == {"choice"}
        config = tuning.resolve_config(model, name, None, run_config(tmp_path))
        for key in spec["choice"]:
            assert key in config.final_config_dict, (model, key)
    micro = read_hyper_file(find_params_file("MICRO"))["choice"]
    assert {"learning_rate", "reg_weight", "knn_k", "lambda_coeff", "loss_ratio", "n_item_layers",
            "cf_model"} <= set(micro)
    assert micro["learning_rate"] == [1e-4, 5e-4, 1e-3, 5e-3] and micro["reg_weight"] == [0, 1e-5, 1e-4, 1e-3]


def test_bad_space_and_names_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.hyper"
    bad.write_text("learning_rate choice [0.1]\nreg_weight between 0,1\n")
    with pytest.raises(ConfigError, match=r"bad.hyper:2"):
        read_hyper_file(str(bad))
    with pytest.raises(ConfigError, match="shipped spaces"):
        find_params_file("NoSuchModel")
    continuous = tmp_path / "cont.hyper"
    continuous.write_text("lambda_coeff uniform 0.5,1.0\n")
    with pytest.raises(ConfigError, match="exhaustive search needs 'choice'"):
        tune_model("MICRO", "syn", str(continuous), "exhaustive", output_file=str(tmp_path / "x"))


def test_ray_local_two_workers(tmp_path, synthetic):
    ray = pytest.importorskip("ray", reason="Ray is not installed")
    name = synthetic("syn", **SMALL)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as error:  # noqa: BLE001 - any start-up failure means this machine can't run Ray
        pytest.skip(f"Ray cannot start a local instance here: {type(error).__name__}: {error}")
    try:
        out = tmp_path / "tune" / "bpr-ray"
        doc = tune_model("BPR", name, grid_file(tmp_path, "learning_rate choice [0.001, 0.05]\n"), "exhaustive",
                         output_file=str(out), overrides=overrides(tmp_path), tool="ray",
                         ray_options={"workers": 2, "local_dir": str(tmp_path / "ray")})
    finally:
        ray.shutdown()
    saved = load_export(str(out) + ".json")
    assert saved == json.loads(json.dumps(doc)) and saved["tool"] == "ray" and saved["status"] == "finished"
    assert sorted(t["params"]["learning_rate"] for t in saved["trials"]) == [0.001, 0.05]
    assert all(t["status"] == "ok" and "recall@20" in t["test"] for t in saved["trials"])
    assert saved["best"]["trial"] == expected_best(saved["trials"])["trial"]
    # one checkpoint folder per trial: parallel trials of one model never overwrite each other
    assert len({os.path.dirname(t["checkpoint"]) for t in saved["trials"]}) == 2
