"""Ray is optional (RecBole 1.2.1's ``ray<=2.6.3`` has no wheels for Python 3.12+).

Without Ray (``sys.modules["ray"] = None`` in a child process: ``import ray`` fails there as if it were not
installed, whatever this environment holds) the package, RecBole's ``quick_start`` and the non-Ray
commands work, and ``--tool ray`` is one line with the install command. With Ray (2.6.3 on Python 3.11,
the newest on 3.12+), RecBole's own ``objective_function`` reports through whichever API that Ray has;
2 Ray trials through the plugin's search: ``tests/test_tuning.py`` and ``tests/test_compat.py``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_config
from recbole_micro import compat, raytune

NO_RAY = "import sys; sys.modules['ray'] = None\n"
SMALL = dict(n_users=40, n_items=50, n_clusters=5, per_user=(6, 10))


def recbole_config(name):
    """What RecBole's own ``Config`` needs for the synthetic dataset (it reads no dataset yaml of ours)."""
    return {"model": "BPR", "dataset": name, "benchmark_filename": ["train", "valid", "test"]}


def without_ray(cwd, code):
    """Run ``code`` in a child Python where ``import ray`` fails; returns the finished process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-c", NO_RAY + code], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def script_without_ray(cwd, script, *args):
    """``python <script> ARGS`` (a repository script) in a child where ``import ray`` fails."""
    code = (f"import runpy; sys.argv = {[script, *args]!r}\n"
            f"runpy.run_path({str(REPO / script)!r}, run_name='__main__')\n")
    return without_ray(cwd, code)


def test_import_without_ray_leaves_ray_unimportable(tmp_path):
    """``recbole.quick_start`` (``from ray import tune`` at its top) imports; the stand-in it got is not left
    in ``sys.modules``; its ``tune.report`` does nothing (as Ray 2.6's outside a trial); anything else of it
    names the install command."""
    done = without_ray(tmp_path, (
        "import recbole_micro, recbole.quick_start as q\n"
        "from recbole_micro import compat\n"
        "print(json.dumps([fix for fix, _ in compat.applied()]))\n"
        "try:\n    import ray\n    print('ray imported')\n"
        "except ImportError as error:\n    print(type(error).__name__)\n"
        "print(sys.modules.get('ray'), sys.modules.get('ray.tune', 'absent'))\n"
        "print(q.quick_start.tune.report(recall=1.0))\n"
        "try:\n    q.quick_start.tune.run\nexcept AttributeError as error:\n    print(error)\n").replace(
        "import recbole_micro", "import json; import recbole_micro", 1))
    assert done.returncode == 0, done.stderr[-3000:]
    fixes, imported, modules, reported, missing = done.stdout.strip().splitlines()[-5:]
    assert "no ray" in json.loads(fixes) and "ray>=2.7" not in json.loads(fixes)
    assert imported == "ModuleNotFoundError" and modules == "None absent" and reported == "None"
    assert missing.startswith("ray.tune.run needs Ray Tune, which is not installed") and "pip install" in missing


def test_commands_without_ray(tmp_path, synthetic):
    """Training, hyperopt tuning and RecBole's own ``objective_function`` run without Ray; ``--tool ray`` is
    one ``error:`` line with the install command (exit 2), written before any file."""
    name = synthetic("syn", **SMALL)
    config = run_config(tmp_path, epochs=1, eval_step=1)
    overrides = [f"--{k}={v}" for k, v in config.items()]
    trained = script_without_ray(tmp_path, "run_recbole_micro.py", "--model", "BPR", "--dataset", name, *overrides)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert list((tmp_path / "saved").glob("BPR-*.pth"))

    grid = tmp_path / "grid.hyper"
    grid.write_text("learning_rate choice [0.001, 0.05]\n")
    tuned = script_without_ray(tmp_path, "run_hyper.py", "--model", "BPR", "--dataset", name, "--params_file",
                               str(grid), "--output_file", str(tmp_path / "hyperopt"), *overrides)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    doc = json.loads((tmp_path / "hyperopt.json").read_text())
    assert doc["status"] == "finished" and [t["status"] for t in doc["trials"]] == ["ok", "ok"]

    refused = script_without_ray(tmp_path, "run_hyper.py", "--model", "BPR", "--dataset", name, "--tool", "ray",
                                 "--params_file", str(grid), "--output_file", str(tmp_path / "ray"), *overrides)
    assert refused.returncode == 2 and refused.stdout.strip() == ""
    assert refused.stderr.strip().splitlines() == [f"error: {raytune.missing_message()}"]
    assert "pip install \"ray[tune]" in refused.stderr and not (tmp_path / "ray.json").exists()

    recbole_flow = without_ray(tmp_path, (
        "import json, recbole_micro\n"
        "from recbole.quick_start import objective_function\n"
        f"result = objective_function({dict(config, **recbole_config(name))!r}, saved=False)\n"
        "print(json.dumps(sorted(result['test_result'])))\n"))
    assert recbole_flow.returncode == 0, recbole_flow.stderr[-3000:]
    assert "recall@10" in json.loads(recbole_flow.stdout.strip().splitlines()[-1])


TUNE_RECBOLE = """
import json, os, sys
import recbole_micro  # noqa: F401 - the fixes
import ray
from ray import tune
from recbole_micro import compat, raytune

BASE, RESULTS = json.loads(sys.argv[1]), sys.argv[2]


def trainable(config, original=False):
    import recbole_micro  # noqa: F401 - the fixes in this worker too
    import recbole.quick_start.quick_start as quick_start

    function = quick_start.objective_function
    function = getattr(function, "__wrapped__", function) if original else function
    function(dict(BASE, **config), saved=False)  # reports test_result through tune.report(**...)


ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
out = {"fixed": compat.fixed_by(__import__("recbole.quick_start").quick_start.objective_function)}


class Record(tune.Callback):
    def __init__(self):
        self.trials, self.errors = [], []

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.trials.append(["complete", "recall@10" in (trial.last_result or {})])

    def on_trial_error(self, iteration, trials, trial, **info):
        self.trials.append(["error", "recall@10" in (trial.last_result or {})])
        error = getattr(trial, "error_file", None)
        self.errors.append(open(error).read()[-3000:] if error and os.path.exists(error) else repr(trial))


for name, original in (("recbole", False), ("original", True)):
    record = Record()
    try:
        tune.run(tune.with_parameters(trainable, original=original), callbacks=[record],
                 config={"learning_rate": tune.grid_search([0.001, 0.05])}, raise_on_failed_trial=False,
                 verbose=0, **raytune.run_options(os.path.join(RESULTS, name)))
    except RuntimeError as error:  # Ray 2.6 without pyarrow: only its final analysis fails
        if "pyarrow" not in str(error):
            raise
    out[name] = sorted(record.trials)
    out[name + " errors"] = record.errors
ray.shutdown()
print(json.dumps(out))
"""


def test_recbole_objective_function_tunes_on_this_ray(tmp_path, synthetic):
    """RecBole's own Ray flow: its ``objective_function`` as a Tune trainable, 2 trials. It ends with
    ``tune.report(**test_result)``: Ray 2.6 takes keywords, newer Ray one dict (there RecBole's own function
    fails in a trial, and the ``ray>=2.7`` fix reports the same metrics as a dict)."""
    if not raytune.available():
        pytest.skip("Ray is not installed (the no-Ray path: test_commands_without_ray)")
    name = synthetic("syn", **SMALL)
    base = dict(run_config(tmp_path, epochs=1, eval_step=1), **recbole_config(name))
    script = tmp_path / "tune_recbole.py"
    script.write_text(TUNE_RECBOLE)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, str(script), json.dumps(base), str(tmp_path / "ray")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=480, env=env)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["recbole"] == [["complete", True], ["complete", True]], out["recbole errors"]  # both reported recall@10
    assert (out["fixed"] == "ray>=2.7") == ("ray>=2.7" in compat.needed())
    if out["fixed"]:
        assert out["original"] == [["error", False], ["error", False]]  # RecBole's own call breaks there
    else:
        assert out["original"] == out["recbole"]


def test_install_command_matches_this_python():
    command = raytune.install_command()
    assert command == ('pip install "ray[tune]==2.6.3"' if sys.version_info < (3, 12)
                       else 'pip install "ray[tune]>=2.60"')
    assert Path(REPO / "setup.py").read_text().count(command.split('"')[1]) == 1  # the extra says the same
