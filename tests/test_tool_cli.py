"""The tools as users call them: ``run_hyper.py``, ``run_compare.py`` and the ``tune`` / ``compare``
sub-commands of ``run_recbole_micro.py``, chained as in the README (tune, then compare with --tuned)."""

import os
import signal
import subprocess
import sys

from conftest import REPO, run_config, stopped_when_ready
from recbole_micro.tools.export import load_export
from recbole_micro.tools.results import load_results, model_runs

SMALL = dict(n_users=60, n_items=80, n_clusters=6, per_user=(5, 8))


def run(tmp_path, script, *args):
    overrides = [f"--{k}={v}" for k, v in run_config(tmp_path, epochs=1, eval_step=1).items()]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(REPO / script), *args, *overrides], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_tune_then_compare_through_the_scripts_and_sub_commands(tmp_path, synthetic):
    name = synthetic("syn", **SMALL)
    (tmp_path / "bpr.hyper").write_text("learning_rate choice [0.001, 0.01]\n")
    (tmp_path / "lightgcn.hyper").write_text("learning_rate loguniform -7,-3\nn_layers quniform 1,3,1\n")

    bpr = run(tmp_path, "run_hyper.py", "--model", "BPR", "--dataset", name, "--params_file", "bpr.hyper",
              "--output_file", "hyper_results/BPR-syn")
    assert "[tune] export: hyper_results/BPR-syn.json" in bpr.stdout
    bpr_export = load_export(str(tmp_path / "hyper_results" / "BPR-syn.json"))
    assert [t["status"] for t in bpr_export["trials"]] == ["ok", "ok"]
    winner = max(bpr_export["trials"], key=lambda t: t["best_valid_score"])
    assert bpr_export["best"]["trial"] == winner["trial"]

    run(tmp_path, "run_recbole_micro.py", "tune", "--model", "LightGCN", "--dataset", name, "--params_file",
        "lightgcn.hyper", "--algo", "random", "--max_evals", "2", "--output_file", "hyper_results/LightGCN-syn")
    lightgcn_export = load_export(str(tmp_path / "hyper_results" / "LightGCN-syn.json"))
    assert lightgcn_export["algo"] == "random" and len(lightgcn_export["trials"]) == 2
    assert lightgcn_export["command"].startswith("python run_recbole_micro.py tune --model LightGCN")
    for trial in lightgcn_export["trials"]:
        assert isinstance(trial["params"]["n_layers"], int) and 1 <= trial["params"]["n_layers"] <= 3

    compared = run(tmp_path, "run_recbole_micro.py", "compare", "--dataset", name, "--models", "BPR,LightGCN",
                   "--seeds", "1,2", "--tuned", "hyper_results/BPR-syn.json,hyper_results/LightGCN-syn.json",
                   "--out", "res")
    assert "[compare 4/4] LightGCN seed 2 done" in compared.stdout
    doc = load_results(str(tmp_path / "res" / "syn.json"))
    assert {m: [r["seed"] for r in model_runs(doc, m, "ok")] for m in doc["order"]} == {"BPR": [1, 2], "LightGCN": [1, 2]}
    for model, export in (("BPR", bpr_export), ("LightGCN", lightgcn_export)):
        for r in model_runs(doc, model):
            assert r["tuned_from"]["trial"] == export["best"]["trial"]
            assert {k: r["hyper"][k] for k in export["best"]["params"]} == export["best"]["params"]
    page = (tmp_path / "res" / "syn.md").read_text()
    assert "python run_recbole_micro.py compare --dataset syn --models BPR,LightGCN --seeds 1,2" in page

    (tmp_path / "res" / "syn.md").unlink()
    run(tmp_path, "run_compare.py", "--dataset", name, "--from-json", "--out", "res")
    assert (tmp_path / "res" / "syn.md").read_text() == page



def long_run(tmp_path, saved):
    """Overrides for a run that trains until stopped: tiny epochs, a resume point after every one, in ``saved``."""
    return [f"--{k}={v}" for k, v in run_config(tmp_path, epochs=100000, eval_step=1, stopping_step=100000,
                                                 last_checkpoint_step=1, checkpoint_dir=tmp_path / saved).items()]


def test_sigterm_ends_a_search_and_a_comparison_as_ctrl_c_does(tmp_path, synthetic):
    """SIGTERM (``kill``, a scheduler's time limit) while a trial or a compared run trains: exit status 143, one
    last line naming what is kept and how to continue, no traceback, and the unfinished trial / run recorded as
    ``interrupted`` with its resume point, as after Ctrl-C."""
    name = synthetic("syn", **SMALL)
    (tmp_path / "bpr.hyper").write_text("learning_rate choice [0.001, 0.01]\n")
    tune = stopped_when_ready([str(REPO / "run_hyper.py"), "--model", "BPR", "--dataset", name, "--params_file",
                               "bpr.hyper", "--output_file", "hyper/BPR-syn", *long_run(tmp_path, "saved")],
                              tmp_path, "saved/*-last.pth", signal.SIGTERM)
    assert tune.returncode == 143 and "Traceback" not in tune.stderr
    assert tune.stderr.strip().splitlines()[-1] == (
        "[tune] terminated (SIGTERM): the finished trials are kept in hyper/BPR-syn.json and hyper/BPR-syn.txt; "
        "continue with the same command and --resume")
    export = load_export(str(tmp_path / "hyper" / "BPR-syn.json"))
    assert export["status"] == "interrupted"

    compare = stopped_when_ready([str(REPO / "run_compare.py"), "--dataset", name, "--models", "BPR", "--seeds", "1",
                                  "--out", "res", *long_run(tmp_path, "c")], tmp_path, "c/*-last.pth",
                                 signal.SIGTERM)
    assert compare.returncode == 143 and "Traceback" not in compare.stderr
    assert compare.stderr.strip().splitlines()[-1] == (
        "[compare] terminated (SIGTERM): finished runs are kept in res/syn.json; continue with the same command and "
        "--resume")
    (run,) = model_runs(load_results(str(tmp_path / "res" / "syn.json")), "BPR")
    assert run["status"] == "interrupted" and os.path.isfile(run["checkpoint"].replace(".pth", "-last.pth"))
