"""Nothing in a data file runs, and a checkpoint's recommendations stay tied to their tokens.

* crafted checkpoints calling every kind of global the earlier allow-list admitted (RecBole's and the
  plugin's ``Config`` with an ``eval`` payload, the yaml ``Loader``, an enum, a recommender class,
  numpy scalars) and ``os.system``: refused by ``load_checkpoint``, ``recommend``, ``--resume``,
  ``evaluate`` and the CLI with one line; the marker file the payload would create never appears;
* ``config_dict`` strings, yaml Python tags and string values inside a data-only checkpoint are never
  evaluated (RecBole's own ``Config`` does run the same payload: the control);
* token ids: a shuffled-rows re-export recommends exactly as the original; other users/items or other
  training interactions are refused; a relative ``data_path`` is stored absolute, and a moved dataset
  gets one line naming the stored folder and ``--data_path``.
"""

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.model.general_recommender.bpr import BPR
from recbole.utils import ModelType

from conftest import REPO, run_config, train_on_synthetic
from recbole_micro import checkpoint as checkpoint_module
from recbole_micro.checkpoint import load_checkpoint
from recbole_micro.cli import main as cli_main
from recbole_micro.config import Config
from recbole_micro.data.synthetic import make_synthetic_dataset
from recbole_micro.errors import CheckpointError, ConfigError
from recbole_micro.quick_start import build, load_data_and_model, run_recbole_micro
from recbole_micro.recommend import recommend
from recbole_micro.utils import create_dataset

SMALL = dict(n_users=40, n_items=50, n_clusters=5, per_user=(6, 10), dims={"image": 12, "text": 6})
TRAIN = dict(epochs=2, eval_step=1, train_batch_size=128)
USERS = ["0", "3", "17", "39"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch MICRO run on a generated dataset: (root, best checkpoint, -last checkpoint)."""
    def train(root):
        config = run_config(root, **TRAIN)
        return run_recbole_micro(model="MICRO", dataset="syn", config_dict=config)["checkpoint"]

    root, best = train_on_synthetic(tmp_path_factory, "sec", SMALL, train)
    return root, best, best[:-4] + "-last.pth"


def payload(marker):
    """Python source that creates ``marker`` when evaluated, and evaluates to a harmless value."""
    return f"__import__('pathlib').Path({str(marker)!r}).touch() or 0.001"


class Call:
    """Pickles as the call ``func(*args)`` (what a crafted pickle can do with any global it names)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def crafted_cases(marker):
    """``{case: (where, object, global named in the file)}``: ``where`` is the checkpoint key replaced."""
    config_dict = {"learning_rate": payload(marker)}
    return {
        "recbole_config": ("config", Call(RecBoleConfig, "BPR", "syn", None, config_dict),
                           "recbole.config.configurator.Config"),
        "plugin_config": ("config", Call(Config, "BPR", "syn", None, config_dict), "recbole_micro.config.Config"),
        "yaml_loader": ("config", Call(yaml.loader.Loader, f"!!python/object/apply:os.system ['touch {marker}']"),
                        "yaml.loader.Loader"),
        "enum": ("config", {"model": "MICRO", "dataset": "syn", "MODEL_TYPE": ModelType.GENERAL},
                 "recbole.utils.enum_type.ModelType"),
        "recommender_class": ("other_parameter", {"model_class": BPR}, "recbole.model.general_recommender.bpr.BPR"),
        "numpy_scalar": ("best_valid_result", {"recall@20": np.float64(0.5)}, "numpy"),
        "os_system": ("other_parameter", Call(os.system, f"touch {marker}"), "system"),
    }


def write_crafted(real_checkpoint, where, obj, path):
    state = torch.load(real_checkpoint, weights_only=True)
    state[where] = obj
    torch.save(state, path, pickle_protocol=2)


CASES = list(crafted_cases("m"))


def one_line(message, *parts):
    assert "\n" not in message.strip(), message
    for part in parts:
        assert part in message, (part, message)


@pytest.mark.parametrize("case", CASES)
def test_crafted_checkpoint_is_refused_everywhere_and_runs_nothing(trained, tmp_path, capsys, case):
    root, best, _ = trained
    marker = tmp_path / "marker"
    where, obj, name = crafted_cases(marker)[case]
    path = tmp_path / f"{case}.pth"
    write_crafted(best, where, obj, path)
    expected = (str(path), "refused: it holds '", name, "not written by this plugin's current version",
                "nothing in it was run", "retrain")

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    one_line(str(info.value), *expected)
    with pytest.raises(CheckpointError) as info:
        recommend(path, ["1"], topk=3)
    one_line(str(info.value), *expected)
    _, _, trainer, (_, _, test_data) = build("MICRO", "syn", config_dict=run_config(root, checkpoint_dir=str(tmp_path)))
    for attempt in (lambda: trainer.resume_checkpoint(str(path)),
                    lambda: trainer.evaluate(test_data, model_file=str(path))):
        with pytest.raises(CheckpointError) as info:
            attempt()
        one_line(str(info.value), *expected)

    capsys.readouterr()
    for argv in (["recommend", "--checkpoint", str(path), "--users", "1"],
                 ["--dataset", "syn", f"--data_path={root}", f"--checkpoint_dir={tmp_path}", "--state=ERROR",
                  "--resume", str(path)]):
        with pytest.raises(SystemExit) as info:
            cli_main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: checkpoint "), err
        one_line(err, *expected)
    assert not marker.exists()


@pytest.mark.parametrize("case", ["recbole_config", "os_system"])
def test_control_the_crafted_payload_runs_when_unpickled_unsafely(trained, tmp_path, case):
    """The payloads above are real: plain ``torch.load(weights_only=False)`` runs them."""
    _, best, _ = trained
    marker = tmp_path / "marker"
    where, obj, _ = crafted_cases(marker)[case]
    write_crafted(best, where, obj, tmp_path / "x.pth")
    torch.load(tmp_path / "x.pth", weights_only=False)
    assert marker.exists()


def test_process_wide_safe_globals_do_not_widen_the_loader(trained, tmp_path):
    _, best, _ = trained
    marker = tmp_path / "marker"
    where, obj, _ = crafted_cases(marker)["recbole_config"]
    write_crafted(best, where, obj, tmp_path / "x.pth")
    torch.serialization.add_safe_globals([RecBoleConfig])  # e.g. another library in the same process
    try:
        with pytest.raises(CheckpointError, match="refused: it holds 'recbole.config.configurator.Config'"):
            load_checkpoint(tmp_path / "x.pth")
        assert RecBoleConfig in torch.serialization.get_safe_globals()  # left as the process had it
    finally:
        torch.serialization.clear_safe_globals()
    assert not marker.exists()


def test_a_global_the_static_scan_misses_is_still_refused(trained, tmp_path, monkeypatch):
    _, best, _ = trained
    marker = tmp_path / "marker"
    where, obj, _ = crafted_cases(marker)["os_system"]
    write_crafted(best, where, obj, tmp_path / "x.pth")
    monkeypatch.setattr(checkpoint_module, "_unsafe_globals", lambda path: [])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "x.pth")
    one_line(str(info.value), "refused (", "not written by this plugin's current version", "nothing in it was run")
    assert not marker.exists()


def test_cli_subprocess_refuses_a_crafted_checkpoint_with_one_line(trained, tmp_path):
    root, best, _ = trained
    marker = tmp_path / "marker"
    where, obj, _ = crafted_cases(marker)["recbole_config"]
    path = tmp_path / "evil.pth"
    write_crafted(best, where, obj, path)
    script = str(REPO / "run_recbole_micro.py")
    for argv in (["recommend", "--checkpoint", str(path), "--users", "1,2"],
                 ["--dataset", "syn", f"--data_path={root}", f"--checkpoint_dir={tmp_path}", "--resume", str(path)]):
        out = subprocess.run([sys.executable, script, *argv], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr and out.stdout.strip() == ""
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: checkpoint {path} refused"), out.stderr
    assert not marker.exists()


# ------------------------------------------------------------------------------ config values
def test_config_dict_strings_are_never_evaluated(trained, tmp_path):
    root, _, _ = trained
    marker = tmp_path / "marker"
    mf = f"__import__('pathlib').Path({str(marker)!r}).touch() or 'mf'"
    config = Config(model="MICRO", dataset="syn", config_dict={"data_path": str(root), "cf_model": mf,
                                                               "learning_rate": payload(marker)})
    assert not marker.exists()
    assert config["cf_model"] == mf and config["learning_rate"] == payload(marker)  # typed as given: str
    typed = Config(model="MICRO", dataset="syn", config_dict={"data_path": str(root), "topk": [5], "knn_k": 4})
    assert typed["topk"] == [5] and typed["knn_k"] == 4
    # control: RecBole's own Config evaluates the very same string
    RecBoleConfig(model="BPR", dataset="syn", config_dict={"data_path": str(root), "learning_rate": payload(marker)})
    assert marker.exists()


def test_command_line_values_are_still_converted(trained, monkeypatch):
    root, _, _ = trained
    monkeypatch.setattr(sys, "argv", ["run", "--learning_rate=0.01", "--topk=[5,10]", "--show_progress=False"])
    config = Config(model="MICRO", dataset="syn", config_dict={"data_path": str(root)})
    assert config["learning_rate"] == 0.01 and config["topk"] == [5, 10] and config["show_progress"] is False


def test_yaml_python_tags_are_not_constructed(trained, tmp_path):
    root, _, _ = trained
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"learning_rate: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=r"tag '!!python/object/apply:os.system' at line 1, column 16"):
        Config(model="MICRO", dataset="syn", config_file_list=[str(evil)], config_dict={"data_path": str(root)})
    plain = tmp_path / "plain.yaml"
    plain.write_text("learning_rate: 1e-3\nknn_k: 4\n")  # RecBole's float form without a dot still reads as a float
    config = Config(model="MICRO", dataset="syn", config_file_list=[str(plain)], config_dict={"data_path": str(root)})
    assert config["learning_rate"] == 0.001 and config["knn_k"] == 4
    assert not marker.exists()


def test_a_key_recbole_evaluates_must_be_a_class_name(trained, tmp_path):
    root, _, _ = trained
    marker = tmp_path / "marker"
    with pytest.raises(ConfigError, match="config key 'teacher' is .*it must be a model class name"):
        Config(model="BPR", dataset="syn", config_dict={"data_path": str(root), "teacher": payload(marker)})
    assert not marker.exists()


def test_strings_inside_a_data_only_checkpoint_are_never_evaluated(trained, tmp_path):
    root, best, _ = trained
    marker = tmp_path / "marker"
    state = torch.load(best, weights_only=True)
    state["config"].update(note=payload(marker), learning_rate=payload(marker))
    torch.save(state, tmp_path / "strings.pth", pickle_protocol=2)
    config = load_data_and_model(str(tmp_path / "strings.pth"))[0]
    assert config["note"] == payload(marker) and not marker.exists()

    state["config"]["model"] = f"__import__('os').system('touch {marker}')"
    torch.save(state, tmp_path / "model.pth", pickle_protocol=2)
    with pytest.raises(CheckpointError) as info:
        load_data_and_model(str(tmp_path / "model.pth"))
    one_line(str(info.value), str(tmp_path / "model.pth"), "could not be rebuilt", "retrain")
    assert not marker.exists()


# ------------------------------------------------------------------------------ token ids
def copy_dataset(root, out, change=None, seed=0):
    """Copy ``root/syn`` to ``out/syn`` with the rows of every file shuffled (header kept);
    ``change(name, rows)`` may edit the rows first."""
    rng = random.Random(seed)
    (out / "syn").mkdir(parents=True)
    for path in (Path(root) / "syn").iterdir():
        if path.suffix == ".yaml":
            shutil.copy(path, out / "syn" / path.name)
            continue
        header, *rows = path.read_text().splitlines()
        if change:
            rows = change(path.name, rows)
        rng.shuffle(rows)
        (out / "syn" / path.name).write_text("\n".join([header, *rows]) + "\n")
    return out


def test_shuffled_rows_reexport_recommends_exactly_as_the_original(trained, tmp_path):
    root, best, _ = trained
    shuffled = copy_dataset(root, tmp_path / "shuffled")
    saved = load_checkpoint(best)["data"]
    # the re-export really numbers tokens differently when built on its own
    plain = create_dataset(Config(model="MICRO", dataset="syn", config_dict=run_config(shuffled)))
    assert list(plain.field2id_token["item_id"]) != saved["item_tokens"]
    assert list(plain.field2id_token["user_id"]) != saved["user_tokens"]

    original = recommend(best, USERS, topk=10)
    reexported = recommend(best, USERS, topk=10, data_path=shuffled)
    for a, b in zip(original, reexported):
        assert a["user"] == b["user"] and a["items"] == b["items"]
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
    dataset = load_data_and_model(best, data_path=shuffled)[2]
    assert list(dataset.field2id_token["item_id"]) == saved["item_tokens"]


def test_resume_on_a_reordered_export_is_refused(trained, tmp_path):
    root, _, last = trained
    shuffled = copy_dataset(root, tmp_path / "shuffled")
    _, _, trainer, _ = build("MICRO", "syn", config_dict=run_config(shuffled, **TRAIN))
    with pytest.raises(CheckpointError) as info:
        trainer.resume_checkpoint(last)
    one_line(str(info.value), last, str(shuffled / "syn"), "other internal ids", "rows in another order",
             "recommend and load_data_and_model renumber by token")


def test_other_users_or_training_interactions_are_refused(trained, tmp_path):
    root, best, _ = trained

    def without_user_5(name, rows):
        return [r for r in rows if not (name.endswith(".inter") and r.split("\t")[0] == "5")]

    fewer = copy_dataset(root, tmp_path / "fewer", without_user_5)
    with pytest.raises(CheckpointError) as info:
        recommend(best, ["1"], data_path=fewer)
    one_line(str(info.value), best, str(fewer / "syn"), "its 40 user tokens differ from the data's 39",
             "1 in the checkpoint only, e.g. ['5']", "--data_path")

    moved = {}

    def one_train_pair_to_test(name, rows):
        if name == "syn.train.inter":
            moved["row"] = rows[0]
            return rows[1:]
        if name == "syn.test.inter":
            return rows + [moved["row"]]
        return rows

    names = sorted((p.name for p in (Path(root) / "syn").iterdir()), key=lambda n: n != "syn.train.inter")
    out = tmp_path / "split"  # same users and items, one training pair moved to the test file
    (out / "syn").mkdir(parents=True)
    for name in names:  # the training file first: its moved row goes into the test file
        header, *rows = (Path(root) / "syn" / name).read_text().splitlines()
        (out / "syn" / name).write_text("\n".join([header, *one_train_pair_to_test(name, rows)]) + "\n")
    with pytest.raises(CheckpointError) as info:
        load_data_and_model(best, data_path=out)
    one_line(str(info.value), best, "training interactions rebuilt from", "are not those it was trained on", "retrain")


# ------------------------------------------------------------------------------ data_path
def test_relative_data_path_is_stored_absolute_and_a_moved_dataset_says_how(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    make_synthetic_dataset(str(work / "rel"), "syn", **SMALL)
    monkeypatch.chdir(work)
    config = dict(run_config(Path("rel"), **TRAIN), checkpoint_dir=str(tmp_path / "saved"), epochs=1)
    best = run_recbole_micro(model="MICRO", dataset="syn", config_dict=config)["checkpoint"]
    assert load_checkpoint(best)["config"]["data_path"] == str(work / "rel")
    monkeypatch.chdir(tmp_path)  # another folder: the absolute path still finds the data
    expected = recommend(best, ["1"], topk=5)

    (work / "rel").rename(tmp_path / "moved")
    with pytest.raises(CheckpointError) as info:
        recommend(best, ["1"], topk=5)
    one_line(str(info.value), best, f"{work / 'rel' / 'syn'}/ (recorded in the checkpoint)", "move the data back",
             "--data_path=<folder>")
    assert recommend(best, ["1"], topk=5, data_path=tmp_path / "moved") == expected
    capsys.readouterr()
    cli_main(["recommend", "--checkpoint", best, "--users", "1", "--topk", "5", f"--data_path={tmp_path / 'moved'}"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[2] for line in lines[1:]] == expected[0]["items"]
