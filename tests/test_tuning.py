"""Tuning through RecBole's HyperTuning (and Ray Tune): export of all trials, best by validation, Ctrl-C,
every search algorithm and space type, one clear line when every trial fails."""

import json
import math
import os
import re

import pytest

from conftest import run_config
from recbole_micro.errors import ConfigError
from recbole_micro.tools import search
from recbole_micro.tools.cli import tune_main
from recbole_micro.tools.export import load_export
from recbole_micro.tools.search import tune_model
from recbole_micro.tools.space import find_params_file, read_hyper_file, shipped_spaces
from recbole_micro.tools.values import known_keys, resolve_config

SMALL = dict(n_users=80, n_items=100, n_clusters=8, per_user=(6, 10))


def overrides(tmp_path, **extra):
    return run_config(tmp_path, epochs=2, eval_step=1, **extra)


def grid_file(tmp_path, text, name="grid.hyper"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def expected_best(trials, bigger=True):
    """The best trial by validation score, computed independently from the export (first of equals)."""
    ok = [t for t in trials if t["status"] == "ok"]
    scores = [t["best_valid_score"] if bigger else -t["best_valid_score"] for t in ok]
    return ok[scores.index(max(scores))]


def fake_objective(valid_of, test_of, calls):
    """An objective whose validation and test rankings of the trials disagree (no training)."""

    def objective(config_dict, config_file_list=None, saved=True, **checkpointing):
        calls.append(dict(config_dict))
        valid, test = valid_of(config_dict), test_of(config_dict)
        return {"best_valid_score": valid, "best_valid_result": {"recall@20": valid},
                "test_result": {"recall@20": test}, "epochs_run": 1, "best_epoch": 0}

    return objective


@pytest.mark.parametrize("model", ["MICRO", "BPR"])
def test_two_point_grid_exports_both_trials_and_best_by_valid(tmp_path, synthetic, model, capsys):
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

    # progress: one line per validation (eval_step 1: per epoch) of each trial, with the trial's values
    stdout = capsys.readouterr().out
    for trial in trials:
        head = f"[tune] trial {trial['trial']}/2 learning_rate={trial['params']['learning_rate']}"
        shown = [float(v) for v in re.findall(re.escape(head) + r" epoch \d+: valid recall@20 ([\d.]+) \(\d+ s\)",
                                              stdout)]
        assert len(shown) == 2 and max(shown) == pytest.approx(trial["best_valid_score"], abs=5e-5)


def test_best_is_the_validation_winner_not_the_test_winner(tmp_path, synthetic, monkeypatch):
    """Validation and test rankings disagree: the export's best (json and txt) is the validation winner."""
    name = synthetic("syn", **SMALL)
    calls = []
    valid = {0.001: 0.10, 0.005: 0.40, 0.01: 0.25}
    test = {0.001: 0.90, 0.005: 0.05, 0.01: 0.50}
    monkeypatch.setattr(search, "objective_function",
                        fake_objective(lambda c: valid[c["learning_rate"]], lambda c: test[c["learning_rate"]], calls))
    out = tmp_path / "sel"
    doc = tune_model("BPR", name, grid_file(tmp_path, "learning_rate choice [0.001, 0.005, 0.01]\n"),
                     output_file=str(out), overrides=overrides(tmp_path))
    assert len(calls) == 3
    assert doc["best"]["params"] == {"learning_rate": 0.005} and doc["best"]["test"]["recall@20"] == 0.05
    assert load_export(str(out))["best"]["params"] == {"learning_rate": 0.005}
    best_trial = doc["best"]["trial"]
    assert f"* best by valid recall@20: trial {best_trial} (learning_rate=0.005)" in (tmp_path / "sel.txt").read_text()


@pytest.mark.parametrize("algo", ["random", "bayes"])
def test_random_and_bayes_sample_every_space_type_within_bounds(tmp_path, synthetic, monkeypatch, algo):
    """uniform, quniform (an integer key gets integers), loguniform (natural-log bounds) and choice."""
    name = synthetic("syn", **SMALL)
    calls = []
    monkeypatch.setattr(search, "objective_function",
                        fake_objective(lambda c: -abs(c["lambda_coeff"] - 0.8), lambda c: 0.0, calls))
    space = grid_file(tmp_path, "lambda_coeff uniform 0.5,1.0\nknn_k quniform 5,20,5\n"
                                "reg_weight loguniform -11.5,-4.6\ncf_model choice ['lightgcn', 'mf']\n")
    doc = tune_model("MICRO", name, space, algo, max_evals=6, output_file=str(tmp_path / algo),
                     overrides=overrides(tmp_path), seed=7)
    assert len(calls) == 6 and len(doc["trials"]) == 6 and doc["status"] == "finished"
    for call, trial in zip(calls, doc["trials"]):
        assert 0.5 <= call["lambda_coeff"] <= 1.0
        assert isinstance(call["knn_k"], int) and call["knn_k"] in (5, 10, 15, 20)
        assert math.exp(-11.5) <= call["reg_weight"] <= math.exp(-4.6)
        assert call["cf_model"] in ("lightgcn", "mf")
        assert trial["params"] == {k: call[k] for k in ("lambda_coeff", "knn_k", "reg_weight", "cf_model")}
    assert doc["best"]["params"] == expected_best(doc["trials"])["params"]
    assert len({c["lambda_coeff"] for c in calls}) > 1  # it explores
    # same search seed, same trials
    again = []
    monkeypatch.setattr(search, "objective_function",
                        fake_objective(lambda c: -abs(c["lambda_coeff"] - 0.8), lambda c: 0.0, again))
    tune_model("MICRO", name, space, algo, max_evals=6, output_file=str(tmp_path / f"{algo}2"),
               overrides=overrides(tmp_path), seed=7)
    assert [c["lambda_coeff"] for c in again] == [c["lambda_coeff"] for c in calls]


def test_interrupt_keeps_finished_trials(tmp_path, synthetic, monkeypatch, capsys):
    name = synthetic("syn", **SMALL)
    real = search.objective_function
    calls = []

    def interrupted_after_first(config_dict, config_file_list=None, **checkpointing):
        calls.append(config_dict["learning_rate"])
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(config_dict, config_file_list, **checkpointing)

    monkeypatch.setattr(search, "objective_function", interrupted_after_first)
    out = tmp_path / "tune" / "micro"
    argv = ["--model", "MICRO", "--dataset", name, "--params_file",
            grid_file(tmp_path, "learning_rate choice [0.001, 0.01, 0.05]\n"), "--output_file", str(out)]
    argv += [f"--{k}={v}" for k, v in overrides(tmp_path).items()]
    with pytest.raises(SystemExit) as stop:
        tune_main(argv)
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


def test_every_trial_failed_is_one_clear_line(tmp_path, synthetic, capsys):
    name = synthetic("syn", **SMALL)
    out = tmp_path / "tune" / "all-bad"
    argv = ["--model", "MICRO", "--dataset", name, "--output_file", str(out), "--params_file",
            grid_file(tmp_path, "cf_model choice ['nope', 'nada']\n")]
    argv += [f"--{k}={v}" for k, v in overrides(tmp_path).items()]
    with pytest.raises(SystemExit) as stop:
        tune_main(argv)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err and "AllTrialsFailed" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert errors == [line for line in captured.err.splitlines() if line.strip()]  # nothing else on stderr
    assert len(errors) == 1 and "all 2 trial(s) of the MICRO search failed" in errors[0]
    saved = load_export(str(out))
    first = saved["trials"][0]["params"]["cf_model"]  # the grid's order is hyperopt's (it differs across versions)
    assert first in ("nope", "nada") and f"'{first}'" in errors[0] and "all-bad.txt" in errors[0]
    assert saved["status"] == "failed" and [t["status"] for t in saved["trials"]] == ["failed", "failed"]
    assert saved["best"] is None and "no finished trial: all 2 failed" in (tmp_path / "tune" / "all-bad.txt").read_text()


def test_shipped_spaces_name_real_config_keys(tmp_path, synthetic):
    """Every shipped .hyper file parses and searches keys the model's resolved config really has."""
    name = synthetic("syn", **SMALL)
    assert {"MICRO", "LATTICE", "BPR", "LightGCN", "NGCF"} <= set(shipped_spaces())
    assert find_params_file("MICRO") == find_params_file("MICRO.hyper")
    assert find_params_file("MICRO").endswith(os.path.join("hyper", "MICRO.hyper"))
    from recbole_micro.tools.space import check_space

    for model in ("MICRO", "LATTICE", "BPR", "LightGCN", "NGCF"):
        spec = read_hyper_file(find_params_file(model))
        assert set(spec) == {"choice"}
        config = resolve_config(model, name, None, run_config(tmp_path))
        for key in spec["choice"]:
            assert key in config.final_config_dict, (model, key)
        assert check_space(spec, known_keys(config), model) == spec  # every shipped value is accepted as is
    micro = read_hyper_file(find_params_file("MICRO"))["choice"]
    assert {"learning_rate", "reg_weight", "knn_k", "lambda_coeff", "loss_ratio", "n_item_layers",
            "cf_model"} <= set(micro)
    assert micro["learning_rate"] == [1e-4, 5e-4, 1e-3, 5e-3] and micro["reg_weight"] == [0, 1e-5, 1e-4, 1e-3]


def test_bad_space_and_names_are_clear_errors(tmp_path, synthetic):
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
    name = synthetic("syn", **SMALL)
    typo = grid_file(tmp_path, "lerning_rate choice [0.1, 0.2]\n", "typo.hyper")
    with pytest.raises(ConfigError, match=r"unknown config key 'lerning_rate' \(close: learning_rate"):
        tune_model("BPR", name, typo, output_file=str(tmp_path / "typo"), overrides=overrides(tmp_path))
    assert not (tmp_path / "typo.json").exists()  # refused before the export is started


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


def test_resume_reuses_finished_trials_and_ends_like_an_uninterrupted_search(tmp_path, synthetic, monkeypatch):
    name = synthetic("syn", **SMALL)
    space = grid_file(tmp_path, "learning_rate choice [0.001, 0.01, 0.05]\n")
    valid_of = lambda c: {0.001: 0.2, 0.01: 0.5, 0.05: 0.3}[c["learning_rate"]]  # noqa: E731
    test_of = lambda c: {0.001: 0.6, 0.01: 0.1, 0.05: 0.4}[c["learning_rate"]]  # noqa: E731

    def search_once(out, interrupt_after=None):
        calls = []
        objective = fake_objective(valid_of, test_of, calls)

        def maybe_interrupted(config_dict, config_file_list=None, saved=True, **checkpointing):
            if interrupt_after is not None and len(calls) == interrupt_after:
                raise KeyboardInterrupt
            return objective(config_dict, config_file_list, saved, **checkpointing)

        monkeypatch.setattr(search, "objective_function", maybe_interrupted)
        argv = ["--model", "BPR", "--dataset", name, "--params_file", space, "--output_file", str(out)]
        argv += [f"--{k}={v}" for k, v in overrides(tmp_path).items()]
        return calls, argv

    full_calls, argv = search_once(tmp_path / "full")
    tune_main(argv)
    full = load_export(str(tmp_path / "full.json"))

    first_calls, argv = search_once(tmp_path / "cut", interrupt_after=2)
    with pytest.raises(SystemExit):
        tune_main(argv)
    assert len(load_export(str(tmp_path / "cut.json"))["trials"]) == 2
    resumed_calls, argv = search_once(tmp_path / "cut")
    tune_main(argv + ["--resume"])
    resumed = load_export(str(tmp_path / "cut.json"))

    assert len(resumed_calls) == 1  # only the trial the interrupted run did not finish was trained
    assert [t["params"] for t in resumed["trials"]] == [t["params"] for t in full["trials"]]
    assert [t["best_valid_score"] for t in resumed["trials"]] == [t["best_valid_score"] for t in full["trials"]]
    assert [bool(t.get("reused")) for t in resumed["trials"]] == [True, True, False]
    assert resumed["best"]["params"] == full["best"]["params"] == {"learning_rate": 0.01}

    _, argv = search_once(tmp_path / "cut")
    with pytest.raises(SystemExit) as stop:  # another search's export is refused, not mixed in
        tune_main([a if not a.startswith("--seed=") else "--seed=7" for a in argv] + ["--seed=7", "--resume"])
    assert stop.value.code == 2


def test_a_trial_interrupted_mid_training_continues_from_its_checkpoint(tmp_path, synthetic, monkeypatch):
    """Ctrl-C inside a trial's third epoch: the export records the running trial and its checkpoint;
    ``--resume`` continues that trial from its ``-last.pth`` (not from scratch) and the search ends
    with the same trials, scores and epochs as an uninterrupted one."""
    from recbole_micro.trainer import SafeCheckpointMixin

    name = synthetic("syn", **SMALL)
    space = grid_file(tmp_path, "learning_rate choice [0.001, 0.01]\n")
    fixed = dict(overrides(tmp_path), epochs=4, eval_step=1)
    full = tune_model("BPR", name, space, output_file=str(tmp_path / "full"), overrides=fixed)

    original_epoch = SafeCheckpointMixin._train_epoch
    state = {"armed": True}

    def ctrl_c(self, train_data, epoch_idx, *args, **kwargs):
        if state["armed"] and self.config["learning_rate"] == full["trials"][1]["params"]["learning_rate"] \
                and epoch_idx == 2:
            state["armed"] = False
            raise KeyboardInterrupt
        return original_epoch(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(SafeCheckpointMixin, "_train_epoch", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        tune_model("BPR", name, space, output_file=str(tmp_path / "cut"), overrides=fixed)
    cut = load_export(str(tmp_path / "cut"))
    assert cut["status"] == "interrupted" and len(cut["trials"]) == 1
    running = cut["running"]
    assert running["params"] == full["trials"][1]["params"] and "BPR-trial2-" in running["checkpoint"]
    assert os.path.isfile(running["checkpoint"][: -len(".pth")] + "-last.pth")
    assert "trial 2 running: learning_rate=" in (tmp_path / "cut.txt").read_text()

    resumed_from = []
    real = search.objective_function

    def spy(config_dict, config_file_list=None, **checkpointing):
        resumed_from.append(checkpointing.get("resume"))
        return real(config_dict, config_file_list, **checkpointing)

    monkeypatch.setattr(search, "objective_function", spy)
    resumed = tune_model("BPR", name, space, output_file=str(tmp_path / "cut"), overrides=fixed, resume=True)
    assert len(resumed_from) == 1 and resumed_from[0] is not None  # only the stopped trial trains, from its file
    assert resumed_from[0].startswith(running["checkpoint"][: -len(".pth")])
    assert "running" not in resumed and resumed["status"] == "finished"
    for mine, theirs in zip(resumed["trials"], full["trials"]):
        for key in ("params", "status", "best_valid_score", "valid", "test", "epochs_run", "best_epoch"):
            assert mine[key] == theirs[key], key
    assert resumed["trials"][1]["checkpoint"] == running["checkpoint"]
