"""Bad input fails fast with one clear message (file/key, what was found, the fix); warnings carry counts.

Every case goes through the public entry points (``Config`` → ``create_dataset`` → ``build``) and a
few through the command line in a subprocess (exit 2, one stderr line, no traceback). The converter's
own cases (missing source files, feature rows that do not match the item ids, NaN in .npy files, ...)
are in ``tests/test_convert.py``.
"""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_config
from recbole_micro.config import Config
from recbole_micro.errors import ConfigError, DatasetNotFoundError, FeatureError, RecboleMicroError
from recbole_micro.quick_start import build
from recbole_micro.utils import create_dataset

SMALL = dict(n_users=40, n_items=50, n_clusters=4, per_user=(5, 8), dims={"image": 8, "text": 4})


# ------------------------------------------------------------------------------------------ helpers
def atom(tmp_path, name, modality):
    return Path(tmp_path) / name / f"{name}.{modality}"


def read_atom(path):
    lines = Path(path).read_text().splitlines()
    return lines[0], [line.split("\t") for line in lines[1:]]


def write_atom(path, header, rows):
    Path(path).write_text("\n".join([header] + ["\t".join(r) for r in rows]) + "\n")


def edit_atom(tmp_path, name, modality, edit):
    """Rewrite ``<name>.<modality>``: ``edit(rows)`` returns the new list of ``[token, values]`` rows."""
    path = atom(tmp_path, name, modality)
    header, rows = read_atom(path)
    write_atom(path, header, edit(rows))
    return path


def inter_items(tmp_path, name):
    items = set()
    for split in ("train", "valid", "test"):
        for line in (Path(tmp_path) / name / f"{name}.{split}.inter").read_text().splitlines()[1:]:
            items.add(line.split("\t")[1])
    return items


def load(tmp_path, name, **overrides):
    config = Config(model="MICRO", dataset=name, config_dict=run_config(tmp_path, **overrides))
    return create_dataset(config)


def one_line(error):
    message = str(error.value)
    assert "\n" not in message and message
    return message


def check(message, *parts):
    for part in parts:
        assert part in message, (part, message)


@pytest.fixture
def syn(synthetic):
    return synthetic("syn", **SMALL)


# ------------------------------------------------------------------------------------------ feature atoms
def test_missing_feature_atom(tmp_path, syn):
    atom(tmp_path, syn, "text").unlink()
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn)
    check(one_line(info), "modality 'text'", str(atom(tmp_path, syn, "text")), "text_feat:float_seq",
          "remove 'text' from 'modalities'")


def test_unknown_modality_in_config(tmp_path, syn):
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn, modalities=["image", "audio"])
    check(one_line(info), "modality 'audio'", f"{syn}.audio", "not found")


def test_empty_modality_list(tmp_path, syn):
    with pytest.raises(FeatureError) as info:
        build(model="MICRO", dataset=syn, config_dict=run_config(tmp_path, modalities=[]))
    check(one_line(info), "MICRO needs item features", f"'{syn}'", "modalities: [image, text]")


def test_rows_of_different_lengths(tmp_path, syn):
    def shorten(rows):
        rows[3][1] = " ".join(rows[3][1].split(" ")[:-2])
        return rows

    path = edit_atom(tmp_path, syn, "image", shorten)
    bad_token = read_atom(path)[1][3][0]
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn)
    check(one_line(info), str(path), "'image_feat'", "different lengths", "(6..8)", f"item '{bad_token}' has 6",
          "same dimension")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_or_inf_values(tmp_path, syn, value):
    def poison(rows):
        values = rows[5][1].split(" ")
        values[2] = value
        rows[5][1] = " ".join(values)
        return rows

    path = edit_atom(tmp_path, syn, "text", poison)
    token = read_atom(path)[1][5][0]
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn)
    check(one_line(info), str(path), "'text_feat'", "NaN or Inf", "1 rows", f"'{token}'", "fix or drop")


def test_all_zero_feature_vectors(tmp_path, syn):
    def zero(rows):
        for row in rows[:2]:
            row[1] = " ".join(["0"] * len(row[1].split(" ")))
        return rows

    path = edit_atom(tmp_path, syn, "image", zero)
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn)
    check(one_line(info), str(path), "2 all-zero rows", "cosine", "drop the rows")


def test_duplicate_items_with_different_features(tmp_path, syn):
    def duplicate(rows):
        token = rows[4][0]
        values = rows[7][1]
        return rows + [[token, values]]

    path = edit_atom(tmp_path, syn, "image", duplicate)
    token = read_atom(path)[1][4][0]
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn)
    check(one_line(info), str(path), f"item '{token}' has 2 rows with different features", "one row per item")


def test_identical_duplicates_are_dropped_with_a_warning(tmp_path, syn, caplog):
    edit_atom(tmp_path, syn, "image", lambda rows: rows + [list(rows[0]), list(rows[1])])
    caplog.set_level(logging.WARNING)
    dataset = load(tmp_path, syn)
    assert any("dropped 2 identical duplicate rows" in r.getMessage() for r in caplog.records)
    assert dataset.modality_features["image"].shape[0] == dataset.item_num


def test_feature_rows_of_unknown_items_warn_with_count(tmp_path, syn, caplog):
    known = inter_items(tmp_path, syn)
    header, rows = read_atom(atom(tmp_path, syn, "image"))
    already = sum(r[0] not in known for r in rows)  # generated items nobody interacted with
    edit_atom(tmp_path, syn, "image", lambda rows: rows + [["ghost1", rows[0][1]], ["ghost2", rows[1][1]],
                                                         ["ghost3", rows[2][1]]])
    caplog.set_level(logging.WARNING)
    dataset = load(tmp_path, syn)
    path = atom(tmp_path, syn, "image")
    messages = [r.getMessage() for r in caplog.records]
    assert f"{path}: {already + 3} feature rows belong to items that are not in the interactions; they are ignored" in messages
    assert "ghost1" not in dataset.field2token_id[dataset.iid_field]
    assert dataset.modality_features["image"].shape == (dataset.item_num, 8)


def test_items_without_feature_row_get_the_mean_with_a_warning(tmp_path, syn, caplog):
    known = sorted(inter_items(tmp_path, syn))
    dropped = known[:3]
    edit_atom(tmp_path, syn, "text", lambda rows: [r for r in rows if r[0] not in dropped])
    caplog.set_level(logging.WARNING)
    dataset = load(tmp_path, syn)
    path = atom(tmp_path, syn, "text")
    assert any(r.getMessage().startswith(f"{path}: 3 items of the interactions have no 'text_feat' row")
               and "mean feature vector (missing_feature: mean)" in r.getMessage() for r in caplog.records)
    x = dataset.modality_features["text"].numpy()
    ids = dataset.token2id(dataset.iid_field, dropped)
    present = np.setdiff1d(np.arange(1, dataset.item_num), ids)
    np.testing.assert_allclose(x[ids], np.repeat(x[present].mean(0, keepdims=True), 3, 0), rtol=1e-5, atol=1e-6)
    # the documented alternative stops the run instead
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn, missing_feature="error")
    check(one_line(info), str(path), "3 items of the interactions have no feature row", "missing_feature: mean")


def test_unknown_missing_feature_rule(tmp_path, syn):
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn, missing_feature="zero")
    check(one_line(info), "'missing_feature'", "'zero'", "'mean', 'error'")


# ------------------------------------------------------------------------------------------ config keys
@pytest.mark.parametrize("key, value, expected", [
    ("knn_k", 0, "an integer in [1, "),
    ("knn_k", -3, "an integer in [1, "),
    ("knn_k", 50, "fewer than the 50 items"),  # 50 real items: k must stay below
    ("knn_k", 80, "fewer than the 50 items"),
    ("lambda_coeff", 1.5, "a number in [0, 1]"),
    ("lambda_coeff", -0.1, "a number in [0, 1]"),
    ("cf_model", "gcn", "one of ['lightgcn', 'ngcf', 'mf']"),
    ("contrastive_mode", "approx", "one of ['full', 'sampled']"),
    ("contrastive_samples", 1, "an integer >= 2"),
])
def test_bad_model_keys(tmp_path, syn, key, value, expected):
    with pytest.raises(ConfigError) as info:
        build(model="MICRO", dataset=syn, config_dict=run_config(tmp_path, **{key: value}))
    check(one_line(info), f"config key '{key}' is {value!r}", expected)


@pytest.mark.parametrize("typo, known", [("knn_kk", "knn_k"), ("lamda_coeff", "lambda_coeff"), ("loss_ration", "loss_ratio")])
def test_key_that_looks_like_a_typo(tmp_path, syn, typo, known):
    with pytest.raises(ConfigError) as info:
        build(model="MICRO", dataset=syn, config_dict=run_config(tmp_path, **{typo: 3}))
    check(one_line(info), f"'{typo}'", f"did you mean '{known}'")


def test_unrelated_custom_key_is_accepted(tmp_path, syn):
    config, net, trainer, _ = build(model="MICRO", dataset=syn, config_dict=run_config(tmp_path, my_experiment_tag="x"))
    assert config["my_experiment_tag"] == "x"


# ------------------------------------------------------------------------------------------ datasets
def test_dataset_without_data(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        Config(model="MICRO", dataset="nosuch", config_dict=run_config(tmp_path))
    check(one_line(info), "dataset 'nosuch' has no atomic files", str(tmp_path / "nosuch"), "python -m recbole_micro.data")


def test_baby_without_data_says_how_to_convert(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        Config(model="MICRO", dataset="baby", config_dict=run_config(tmp_path))
    check(one_line(info), "dataset 'baby'", "python -m recbole_micro.data lattice ../shared/data/baby --name baby",
          "../shared/data/README.md")


def test_errors_are_value_errors():
    assert issubclass(RecboleMicroError, ValueError)


# ------------------------------------------------------------------------------------------ command line
def run_cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, str(REPO / "run_recbole_micro.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def assert_one_line_exit_2(result, *parts):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    check(lines[0], *parts)


def test_cli_unknown_dataset(tmp_path):
    result = run_cli("--dataset", "baby", f"--data_path={tmp_path}")
    assert_one_line_exit_2(result, "dataset 'baby' has no atomic files", "--name baby")


def test_cli_bad_knn_k_after_loading_data(tmp_path, syn):
    result = run_cli("--dataset", syn, f"--data_path={tmp_path}", f"--checkpoint_dir={tmp_path / 'saved'}",
                     "--knn_k=0", "--state=ERROR")
    assert_one_line_exit_2(result, "config key 'knn_k' is 0")


def test_cli_bad_feature_file(tmp_path, syn):
    edit_atom(tmp_path, syn, "image", lambda rows: rows[:3] + [[rows[3][0], "1 2 nan"]] + rows[4:])
    result = run_cli("--dataset", syn, f"--data_path={tmp_path}", f"--checkpoint_dir={tmp_path / 'saved'}",
                     "--state=ERROR")
    assert_one_line_exit_2(result, f"{syn}.image", "different lengths")
