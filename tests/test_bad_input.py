"""Bad input that used to end in a traceback or a silently wrong run (issue 9): one clear line each.

Feature values that float32 cannot normalise, feature-atom header and value mistakes, modality names,
model names, yaml files, split files and the run-level keys of every model, duplicate and overlapping
interactions. Library calls raise a ``RecboleMicroError`` whose one-line message is checked; command-line
cases run in a subprocess and must exit 2 with one ``error:`` line and no traceback.
"""

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO, assert_cli_error, check, message, run_config
from recbole_micro.config import Config
from recbole_micro.data.convert import ConversionError, check_dataset_name
from recbole_micro.errors import ConfigError, DatasetNotFoundError, FeatureError
from recbole_micro.quick_start import build
from recbole_micro.utils import create_dataset, get_model, model_names

SMALL = dict(n_users=40, n_items=50, n_clusters=4, per_user=(5, 8), dims={"image": 8, "text": 4})


# ------------------------------------------------------------------------------------------ helpers
@pytest.fixture
def syn(synthetic):
    return synthetic("syn", **SMALL)


def atom(tmp_path, name, suffix):
    return Path(tmp_path) / name / f"{name}.{suffix}"


def edit_lines(path, edit):
    """Rewrite a text file: ``edit(lines)`` (without line ends) returns the new lines."""
    path = Path(path)
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    return path


def set_row(index, value):
    """Every value of feature row ``index`` (0 = first data row) becomes ``value``."""
    def edit(lines):
        token, values = lines[index + 1].split("\t")
        lines[index + 1] = token + "\t" + " ".join([value] * len(values.split(" ")))
        return lines
    return edit


def row_token(path, index):
    return Path(path).read_text().splitlines()[index + 1].split("\t")[0]


def load(tmp_path, name, model="MICRO", **overrides):
    config = Config(model=model, dataset=name, config_dict=run_config(tmp_path, **overrides))
    return create_dataset(config)


def run_cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, str(REPO / "run_recbole_micro.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=180)


def cli_args(tmp_path, name, *extra):
    return ("--dataset", name, f"--data_path={tmp_path}", f"--checkpoint_dir={tmp_path / 'saved'}",
            "--state=ERROR", "--epochs=1", *extra)


# ------------------------------------------------------------------------------------------ 5. float32 norms
@pytest.mark.parametrize("value, what", [
    ("1e19", "overflows to inf"),       # |x|² overflows float32 above ~1.8e19
    ("3e38", "overflows to inf"),
    ("1e-30", "is below 1e-12"),        # |x|² underflows to 0
    ("1e-40", "is below 1e-12"),        # denormal
])
def test_feature_rows_float32_cannot_normalise(tmp_path, syn, value, what):
    path = edit_lines(atom(tmp_path, syn, "image"), set_row(3, value))
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn)
    check(message(info), str(path), "field 'image_feat'", "1 rows whose float32 norm", what,
          f"items ['{row_token(path, 3)}']", f"largest |value| {float(value):.3g}", "rescale the features")


def test_feature_values_beyond_float32(tmp_path, syn):
    path = edit_lines(atom(tmp_path, syn, "text"), set_row(2, "1e39"))
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn)
    check(message(info), str(path), "field 'text_feat'", "beyond float32's range", "1 rows",
          f"'{row_token(path, 2)}'", "1e+39")


def test_large_but_normalisable_rows_are_kept_unit_length(tmp_path, syn):
    """The check does not refuse what float32 can still normalise: 1e18 rows load and become unit rows."""
    path = edit_lines(atom(tmp_path, syn, "image"), set_row(3, "1e18"))
    dataset = load(tmp_path, syn)
    x = dataset.modality_features["image"]
    row = dataset.token2id(dataset.iid_field, row_token(path, 3))
    assert x[row].abs().max().item() == pytest.approx(1e18, rel=1e-6)
    norms = F.normalize(x, p=2, dim=1).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


# ------------------------------------------------------------------------------------------ 7. atom headers/values
def _header(old, new):
    return lambda lines: [lines[0].replace(old, new)] + lines[1:]


def _first_row_values(transform):
    def edit(lines):
        token, values = lines[4].split("\t")
        lines[4] = token + "\t" + transform(values)
        return lines
    return edit


HEADER_MISTAKES = [
    ("colon_float", _header("float_seq", "float"),
     ["column 'image_feat' is declared 'float'", "float_seq", "`item_id:token<TAB>image_feat:float_seq`"]),
    ("misspelt_type", _header("float_seq", "floatseq"),
     ["column 'image_feat' has type 'floatseq'", "did you mean 'image_feat:float_seq'?"]),
    ("token_seq", _header("float_seq", "token_seq"), ["column 'image_feat' is declared 'token_seq'", "float_seq"]),
    ("no_header", lambda lines: lines[1:], ["is not a header", "add the header line `item_id:token<TAB>image_feat:float_seq`"]),
    ("float_item_id", _header("item_id:token", "item_id:float"),
     ["column 'item_id' is declared 'float'", "declare it `item_id:token`"]),
    ("no_item_id", _header("item_id:token", "iid:token"), ["no 'item_id' column", "image_feat:float_seq"]),
    ("spaces", _header("\t", " "), ["separated by spaces", "a tab"]),
    ("no_type", _header("item_id:token", "item_id"), ["header column 'item_id' is not `name:type`"]),
    ("bom", lambda lines: ["\ufeff" + lines[0]] + lines[1:], ["byte-order mark", "without BOM"]),
    ("crlf", lambda lines: [line + "\r" for line in lines], ["Windows line ends (CRLF)", "LF"]),
]


@pytest.mark.parametrize("edit, expected", [c[1:] for c in HEADER_MISTAKES], ids=[c[0] for c in HEADER_MISTAKES])
def test_feature_atom_header_mistakes(tmp_path, syn, edit, expected):
    path = edit_lines(atom(tmp_path, syn, "image"), edit)
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn)
    check(message(info), str(path), *expected)


def test_comma_separated_feature_values(tmp_path, syn):
    path = edit_lines(atom(tmp_path, syn, "image"), _first_row_values(lambda v: v.replace(" ", ",")))
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn)
    check(message(info), str(path), "field 'image_feat' on line 5", f"(item '{row_token(path, 3)}')",
          "separated by ','", "write them space-separated", "seq_separator")


def test_non_numeric_feature_value(tmp_path, syn):
    path = edit_lines(atom(tmp_path, syn, "text"), _first_row_values(lambda v: "abc " + v.split(" ", 1)[1]))
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn)
    check(message(info), str(path), "field 'text_feat' on line 5", "value 'abc' is not a number")


def test_item_ids_written_as_floats(tmp_path, syn):
    def floats(lines):
        return [lines[0]] + [f"{line.split(chr(9))[0]}.0\t{line.split(chr(9))[1]}" for line in lines[1:]]

    path = edit_lines(atom(tmp_path, syn, "image"), floats)
    with pytest.raises(FeatureError) as info:
        load(tmp_path, syn)
    check(message(info), str(path), "none of the 50 feature rows belongs to an item of the interactions",
          "'0.0'", "not floats such as '12.0'")


def test_extra_float_column_beside_the_vector_is_accepted(tmp_path, syn):
    edit_lines(atom(tmp_path, syn, "image"), lambda lines: [lines[0] + "\tprice:float"] + [l + "\t1.5" for l in lines[1:]])
    assert load(tmp_path, syn).modality_features["image"].shape[1] == 8


# ------------------------------------------------------------------------------------------ 8. modality names
@pytest.mark.parametrize("modalities, expected", [
    (["image", "image"], "modality 'image' is listed 2 times; list each feature atom once"),
    (["image", "item"], "modality 'item' is a name RecBole reserves"),
    (["inter"], "modality 'inter' is a name RecBole reserves"),
    (["User"], "modality 'User' is a name RecBole reserves"),
    (["image.npy"], "modality 'image.npy' is not a plain name (it contains '.')"),
    (["my image"], "modality 'my image' is not a plain name"),
    ("[image, image]", "modality 'image' is listed 2 times"),
])
def test_bad_modality_names(tmp_path, syn, modalities, expected):
    with pytest.raises(ConfigError) as info:
        Config(model="MICRO", dataset=syn, config_dict=run_config(tmp_path, modalities=modalities))
    check(message(info), "config key 'modalities'", expected)


@pytest.mark.parametrize("arg", ["--modalities=image", "--modalities=[image]", "--modalities=['image']"])
def test_command_line_modality_forms_mean_a_list(tmp_path, syn, monkeypatch, arg):
    monkeypatch.setattr(sys, "argv", [sys.argv[0], arg])  # RecBole's Config reads --key=value from sys.argv
    config = Config(model="MICRO", dataset=syn, config_dict=run_config(tmp_path))
    assert config["modalities"] == ["image"]
    assert "image" in config["additional_feat_suffix"] and "i" not in config["additional_feat_suffix"]
    assert list(create_dataset(config).modality_features) == ["image"]


def test_cli_duplicate_modality(tmp_path, syn):
    assert_cli_error(run_cli(*cli_args(tmp_path, syn, "--modalities=[image,image]")),
                     "config key 'modalities'", "'image' is listed 2 times")


# ------------------------------------------------------------------------------------------ 9. model names
# the plugin's models: every recbole_micro/model/<name>.py defining class <Name> (read here from the files)
PLUGIN_MODELS = ", ".join(sorted(
    cls for path in (REPO / "recbole_micro" / "model").glob("*.py")
    for cls in re.findall(r"^class (\w+)\(", path.read_text(), re.M) if cls.lower() == path.stem))
assert {"LATTICE", "MICRO", "FREEDOM", "LGMRec"} <= set(PLUGIN_MODELS.split(", "))


@pytest.mark.parametrize("name, suggestion", [
    ("lightgcn", "did you mean 'LightGCN'?"),
    ("micro", "did you mean 'MICRO'?"),
    ("Lightgcm", "'LightGCN'"),
    ("bpr", "did you mean 'BPR'?"),
])
def test_miscased_or_misspelt_model_lists_close_names(name, suggestion):
    with pytest.raises(ConfigError) as info:
        get_model(name)
    check(message(info), f"model '{name}' is not a known model", "case-sensitive", suggestion,
          f"plugin's models ({PLUGIN_MODELS})")


def test_unknown_model_without_close_name():
    with pytest.raises(ConfigError) as info:
        get_model("NoSuchModel")
    text = message(info)
    check(text, "model 'NoSuchModel' is not a known model", PLUGIN_MODELS, "BPR")
    assert "lightgbm" not in text.lower() and "did you mean" not in text


def test_model_names_cover_plugin_and_recbole():
    names = model_names()
    assert names["MICRO"] == "recbole_micro.model.micro" and names["LATTICE"] == "recbole_micro.model.lattice"
    for name in ("BPR", "LightGCN", "NGCF", "SASRec"):
        assert names[name].startswith("recbole.model.")
    assert [get_model(n).__name__ for n in ("BPR", "LightGCN", "MICRO")] == ["BPR", "LightGCN", "MICRO"]
    assert "MultimodalGraphRecommender" not in names and "Backbone" not in names


def test_cli_miscased_model(tmp_path, syn):
    assert_cli_error(run_cli(*cli_args(tmp_path, syn, "--model", "lightgcn")),
                     "model 'lightgcn' is not a known model", "did you mean 'LightGCN'?")


# ------------------------------------------------------------------------------------------ 6/11. run-level keys
@pytest.mark.parametrize("model", ["BPR", "LightGCN", "MICRO"])
@pytest.mark.parametrize("key, value, rule", [
    ("learning_rate", -0.1, "a number > 0"),
    ("learning_rate", 0, "a number > 0"),
    ("learning_rate", float("inf"), "a number > 0"),
    ("train_batch_size", 0, "an integer > 0"),
    ("train_batch_size", -5, "an integer > 0"),
    ("train_batch_size", 2.5, "an integer > 0"),
])
def test_run_keys_for_every_model(tmp_path, syn, model, key, value, rule):
    with pytest.raises(ConfigError) as info:
        build(model=model, dataset=syn, config_dict=run_config(tmp_path, **{key: value}))
    check(message(info), f"config key '{key}' is {value!r}; it must be {rule}")


@pytest.mark.parametrize("model", ["BPR", "MICRO"])
def test_quoted_learning_rate_in_a_config_file(tmp_path, syn, model):
    config_file = tmp_path / "run.yaml"
    config_file.write_text('learning_rate: "0.001"\n')
    with pytest.raises(ConfigError) as info:
        build(model=model, dataset=syn, config_file_list=[str(config_file)], config_dict=run_config(tmp_path))
    check(message(info), "config key 'learning_rate' is '0.001', a string", "without quotes", "learning_rate: 0.001")


def test_cli_negative_learning_rate(tmp_path, syn):
    assert_cli_error(run_cli(*cli_args(tmp_path, syn, "--model", "BPR", "--learning_rate=-0.01")),
                     "config key 'learning_rate' is -0.01; it must be a number > 0")


# ------------------------------------------------------------------------------------------ 6. splits
@pytest.mark.parametrize("model", ["BPR", "MICRO"])
@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_empty_split_is_refused(tmp_path, syn, model, split):
    path = atom(tmp_path, syn, f"{split}.inter")
    path.write_text("user_id:token\titem_id:token\n")
    with pytest.raises(DatasetNotFoundError) as info:
        build(model=model, dataset=syn, config_dict=run_config(tmp_path))
    check(message(info), str(path), f"the {split} split has no interactions")


@pytest.mark.parametrize("ratios", [[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.8, 0.2]])
def test_ratio_split_with_an_empty_part_is_refused(tmp_path, syn, ratios):
    folder = tmp_path / syn
    (folder / f"{syn}.train.inter").rename(folder / f"{syn}.inter")
    eval_args = {"split": {"RS": ratios}, "group_by": "user", "order": "RO", "mode": "full"}
    with pytest.raises(ConfigError) as info:
        build(model="BPR", dataset=syn, config_dict=run_config(tmp_path, benchmark_filename=None, eval_args=eval_args))
    check(message(info), "config key 'eval_args.split.RS'", "three ratios > 0")


def _warnings(caplog, text):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_duplicate_pairs_and_train_test_overlap_warn_once_with_counts(tmp_path, syn, caplog):
    folder = tmp_path / syn
    train = (folder / f"{syn}.train.inter").read_text().splitlines()
    test_path = folder / f"{syn}.test.inter"
    test = test_path.read_text().splitlines()
    (folder / f"{syn}.train.inter").write_text("\n".join(train + train[1:4] + train[1:2]) + "\n")  # 4 extra rows, 3 pairs
    shared = [line for line in train[5:12] if line not in test]  # 7 training pairs copied into test
    test_path.write_text("\n".join(test + shared) + "\n")
    caplog.set_level(logging.WARNING)
    for model in ("BPR", "MICRO"):  # two runs on the same data (as a comparison does): one warning each
        build(model=model, dataset=syn, config_dict=run_config(tmp_path))
    dup = _warnings(caplog, "duplicate (user, item) rows")
    assert len(dup) == 1, dup
    check(dup[0], f"{syn}.train.inter", "4 duplicate (user, item) rows (3 pairs appear more than once)", "keep one row per pair")
    overlap = _warnings(caplog, "are also in")
    assert len(overlap) == 1, overlap
    check(overlap[0], str(test_path), f"7 (user, item) pairs are also in {syn}.train.inter", "can never be ranked")


def test_clean_splits_do_not_warn(tmp_path, syn, caplog):
    caplog.set_level(logging.WARNING)
    build(model="BPR", dataset=syn, config_dict=run_config(tmp_path))
    assert not _warnings(caplog, "duplicate (user, item)") and not _warnings(caplog, "are also in")


# ------------------------------------------------------------------------------------------ 11. files
def test_missing_split_file(tmp_path, syn):
    with pytest.raises(DatasetNotFoundError) as info:
        build(model="BPR", dataset=syn, config_dict=run_config(tmp_path, benchmark_filename=["train", "val", "test"]))
    check(message(info), str(tmp_path / syn / f"{syn}.val.inter"), "split file not found",
          "split files present: ['test', 'train', 'valid']", "fix benchmark_filename")


def test_yaml_syntax_error_in_the_dataset_yaml(tmp_path, syn):
    path = tmp_path / syn / f"{syn}.yaml"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + ["knn_k: [10", "lambda_coeff: 0.9"] + lines[2:]) + "\n")
    with pytest.raises(ConfigError) as info:
        Config(model="MICRO", dataset=syn, config_dict=run_config(tmp_path))
    check(message(info), str(path), "dataset yaml is not valid yaml at line 4", "starts on line 3")


def test_cli_yaml_syntax_error_in_config_file(tmp_path, syn):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("epochs: 2\nlearning_rate: 0.001\n  train_batch_size: 64\n")
    assert_cli_error(run_cli(*cli_args(tmp_path, syn, "--config_files", str(config_file))),
                     str(config_file), "not valid yaml at line 3")


def test_cli_missing_config_file(tmp_path, syn):
    assert_cli_error(run_cli(*cli_args(tmp_path, syn, "--config_files", str(tmp_path / "nope.yaml"))),
                     f"config file {tmp_path / 'nope.yaml'} not found")


def test_config_file_that_is_not_a_mapping(tmp_path, syn):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("- epochs\n- 3\n")
    with pytest.raises(ConfigError) as info:
        Config(model="BPR", dataset=syn, config_file_list=[str(config_file)], config_dict=run_config(tmp_path))
    check(message(info), str(config_file), "must be a mapping of `key: value` lines, found a yaml list")


# ------------------------------------------------------------------------------------------ 13. dataset names
@pytest.mark.parametrize("name", ["../../etc", "a/b", "my data"])
def test_dataset_name_that_is_a_path(tmp_path, name):
    with pytest.raises(ConversionError):
        check_dataset_name(name)  # the converter would refuse it: so no converter command is suggested
    with pytest.raises(DatasetNotFoundError) as info:
        Config(model="MICRO", dataset=name, config_dict=run_config(tmp_path))
    text = message(info)
    check(text, f"dataset {name!r} is not a dataset name", "--data_path=")
    assert "python -m recbole_micro.data" not in text


def test_suggested_converter_command_is_accepted_by_the_converter(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        Config(model="MICRO", dataset="my-data_2", config_dict=run_config(tmp_path))
    text = message(info)
    check(text, "python -m recbole_micro.data lattice", "--name my-data_2")
    check_dataset_name("my-data_2")  # no error


def test_cli_dataset_outside_data_path(tmp_path):
    assert_cli_error(run_cli("--dataset", "../../etc", f"--data_path={tmp_path}"),
                     "dataset '../../etc' is not a dataset name")
