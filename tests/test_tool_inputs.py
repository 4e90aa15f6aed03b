"""Files users share with the tools hold data only: a crafted ``.hyper`` or tuning export never runs code
(RecBole's Config eval()s config strings), and every refusal is one line with exit status 2."""

import json
import subprocess
import sys

import pytest
from recbole.config import Config as RecBoleConfig

from conftest import REPO, run_config
from recbole_micro.errors import ConfigError
from recbole_micro.tools.cli import compare_main, tune_main
from recbole_micro.tools.export import TuningExport, trial_entry
from recbole_micro.tools.values import typed_params

SMALL = dict(n_users=40, n_items=50, n_clusters=4, per_user=(5, 8))


def payload(marker, value="mf"):
    """A string that creates ``marker`` when Python evaluates it, and evaluates to ``value``."""
    return f"__import__('pathlib').Path({str(marker)!r}).touch() or {value!r}"


def test_the_payload_is_live_if_it_reaches_recbole(tmp_path):
    """What the tools guard against: RecBole's config conversion runs the string (so the tests below can fail)."""
    marker = tmp_path / "ran"
    assert RecBoleConfig._convert_config_dict(None, {"cf_model": payload(marker)}) == {"cf_model": "mf"}
    assert marker.exists()


def cli_args(tmp_path, name, **extra):
    return [f"--{k}={v}" for k, v in run_config(tmp_path, epochs=1, eval_step=1, **extra).items()]


def assert_one_error_line(capsys, *parts):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def test_crafted_hyper_choice_never_runs(tmp_path, synthetic, capsys):
    name = synthetic("syn", **SMALL)
    marker = tmp_path / "hyper-ran"
    space = tmp_path / "evil.hyper"
    space.write_text(f"learning_rate choice [0.001]\ncf_model choice ['lightgcn', \"{payload(marker)}\"]\n")
    with pytest.raises(SystemExit) as stop:
        tune_main(["--model", "MICRO", "--dataset", name, "--params_file", str(space),
                   "--output_file", str(tmp_path / "out")] + cli_args(tmp_path, name))
    assert stop.value.code == 2
    assert_one_error_line(capsys, "evil.hyper", "cf_model", "takes a plain name", "never evaluated")
    assert not marker.exists()
    assert not (tmp_path / "out.json").exists()  # refused before the search started


@pytest.mark.parametrize("params", [
    {"cf_model": "PAYLOAD"},                      # a string key
    {"learning_rate": "PAYLOAD"},                 # a number key
    {"modalities": ["image", "PAYLOAD"]},         # inside a list
    {"n_item_layers": {"x": "PAYLOAD"}},          # a mapping
])
def test_crafted_tuning_export_never_runs(tmp_path, synthetic, capsys, params):
    name = synthetic("syn", **SMALL)
    marker = tmp_path / "export-ran"
    params = json.loads(json.dumps(params).replace('"PAYLOAD"', json.dumps(payload(marker))))
    export = TuningExport(str(tmp_path / "evil"), {"model": "MICRO", "dataset": name, "valid_metric": "recall@20",
                                                   "valid_metric_bigger": True})
    export.add(trial_entry(params, {"best_valid_score": 0.5, "best_valid_result": {}, "test_result": {}}))
    out = tmp_path / "results"
    with pytest.raises(SystemExit) as stop:
        compare_main(["--dataset", name, "--models", "MICRO", "--tuned", export.json_path, "--out", str(out)]
                     + cli_args(tmp_path, name))
    assert stop.value.code == 2
    key = next(iter(params))
    assert_one_error_line(capsys, "evil.json", f"'{key}'")
    assert not marker.exists()
    assert not out.exists()  # nothing trained, nothing half-written


def test_scripts_refuse_crafted_files_in_one_line(tmp_path, synthetic):
    """As users call them: run_hyper.py and run_compare.py exit 2 with one line; the payload never runs."""
    name = synthetic("syn", **SMALL)
    marker = tmp_path / "script-ran"
    space = tmp_path / "evil.hyper"
    space.write_text(f"cf_model choice [\"{payload(marker)}\"]\n")
    export = TuningExport(str(tmp_path / "evil"), {"model": "BPR", "dataset": name})
    export.add(trial_entry({"learning_rate": payload(marker, 0.1)},
                           {"best_valid_score": 0.5, "best_valid_result": {}, "test_result": {}}))
    commands = [
        ["run_hyper.py", "--model", "MICRO", "--dataset", name, "--params_file", str(space)],
        ["run_compare.py", "--dataset", name, "--models", "BPR", "--tuned", export.json_path],
    ]
    for command in commands:
        result = subprocess.run([sys.executable, str(REPO / command[0]), *command[1:], *cli_args(tmp_path, name)],
                                cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, (command, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "never evaluated" in lines[0], result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert not marker.exists(), command


def test_values_from_files_are_typed_against_the_models_keys():
    known = {"knn_k": 10, "lambda_coeff": 0.9, "cf_model": "lightgcn", "reproducibility": True,
             "modalities": ["image", "text"], "gpu_id": "0", "eval_args": {"mode": "full"}, "nothing": None}
    typed = typed_params({"knn_k": 15.0, "lambda_coeff": 1, "cf_model": "mf", "reproducibility": False,
                          "modalities": ["image"], "nothing": [1, 2.5]}, known, "f.json")
    assert typed == {"knn_k": 15, "lambda_coeff": 1, "cf_model": "mf", "reproducibility": False,
                     "modalities": ["image"], "nothing": [1, 2.5]}
    assert isinstance(typed["knn_k"], int)  # quniform draws floats; an integer key gets an integer
    refused = [
        ({"cf_model": "True"}, "plain name"),            # RecBole's eval would make it a bool
        ({"cf_model": "__debug__"}, "plain name"),       # a name eval resolves to a value
        ({"cf_model": "light gcn"}, "plain name"),
        ({"cf_model": 3}, "plain name"),
        ({"knn_k": "10"}, "takes a number"),             # a quoted number is a string, never evaluated
        ({"knn_k": True}, "takes a number"),
        ({"knn_k": float("nan")}, "takes a number"),
        ({"reproducibility": 1}, "true/false"),
        ({"nothing": "x"}, "a number, true/false or a list of them"),
        ({"eval_args": {"mode": "full"}}, "cannot be set from a file"),
        ({"lambda_coef": 0.5}, "unknown config key 'lambda_coef' (close: lambda_coeff"),
    ]
    for params, message in refused:
        with pytest.raises(ConfigError, match="^f.json: ") as error:
            typed_params(params, known, "f.json")
        assert message in str(error.value) and "\n" not in str(error.value), params


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"format": "something else"}', "is not a recbole-micro tuning export"),
    ('{"format": "recbole-micro tuning export 1", "model": "BPR", "trials": [{"params": 3}]}', "the file is damaged"),
])
def test_damaged_tuning_export_is_one_line(tmp_path, synthetic, capsys, content, message):
    name = synthetic("syn", **SMALL)
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(SystemExit) as stop:
        compare_main(["--dataset", name, "--models", "BPR", "--tuned", str(tmp_path / "bad.json"),
                      "--out", str(tmp_path / "results")] + cli_args(tmp_path, name))
    assert stop.value.code == 2
    assert_one_error_line(capsys, "bad.json", message)
