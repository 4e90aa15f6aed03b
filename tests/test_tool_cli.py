"""The tools as users call them: ``run_hyper.py``, ``run_compare.py`` and the ``tune`` / ``compare``
sub-commands of ``run_recbole_micro.py``, chained as in the README (tune, then compare with --tuned)."""

import os
import subprocess
import sys

from conftest import REPO, run_config
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

