"""Issue 25, items 6-12: tracebacks, unclear lines and silently wrong results that became one clear line
or correct behaviour, and progress of long loads and epochs.

Library calls raise a ``RecboleMicroError`` whose one-line message is checked; command-line cases must exit
2 with one ``error:`` line and no traceback.
"""

import pytest

from conftest import run_config
from recbole_micro.config import Config
from recbole_micro.errors import ConfigError, RecboleMicroError
from recbole_micro.tools.space import read_hyper_file

SMALL = dict(n_users=40, n_items=50, n_clusters=4, per_user=(5, 8), dims={"image": 8, "text": 4})


@pytest.fixture
def syn(synthetic):
    return synthetic("syn", **SMALL)


def message(info):
    text = str(info.value)
    assert text and "\n" not in text, text
    assert isinstance(info.value, RecboleMicroError)
    return text


def check(text, *parts):
    for part in parts:
        assert part in text, (part, text)


# ------------------------------------------------------------------------------------------ 6. yaml tags
def test_python_tag_in_a_config_file_is_one_line(tmp_path, syn):
    marker = tmp_path / "ran"
    config_file = tmp_path / "run.yaml"
    config_file.write_text(f"epochs: 1\nfoo: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError) as info:
        Config(model="BPR", dataset=syn, config_file_list=[str(config_file)], config_dict=run_config(tmp_path))
    check(message(info), str(config_file), "tag '!!python/object/apply:os.system' at line 2, column 6",
          "nothing was run", "remove the tag")
    assert not marker.exists()


@pytest.mark.parametrize("line, tag, column", [
    ("x: !!python/name:os.system", "!!python/name:os.system", 4),
    ("x: [1, !!python/tuple [2]]", "!!python/tuple", 8),
    ("x: {a: !custom 1}", "!custom", 8),
])
def test_python_tag_in_the_dataset_yaml_is_one_line(tmp_path, syn, line, tag, column):
    path = tmp_path / syn / f"{syn}.yaml"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [line]) + "\n")
    with pytest.raises(ConfigError) as info:
        Config(model="MICRO", dataset=syn, config_dict=run_config(tmp_path))
    check(message(info), str(path), f"dataset yaml has the tag '{tag}' at line {len(lines) + 1}, column {column}")


def test_plain_yaml_tags_are_accepted(tmp_path, syn):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("epochs: !!int 3\nlearning_rate: !!float 1e-3\n")
    config = Config(model="BPR", dataset=syn, config_file_list=[str(config_file)], config_dict=run_config(tmp_path))
    assert config["epochs"] == 3 and config["learning_rate"] == 0.001


# ------------------------------------------------------------------------------------------ 10. BOM
def test_utf8_bom_at_the_start_of_a_hyper_file(tmp_path):
    space = tmp_path / "bom.hyper"
    space.write_bytes("learning_rate choice [0.001, 0.01]\nknn_k choice [5]\n".encode("utf-8-sig"))
    assert space.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert read_hyper_file(str(space)) == {"choice": {"learning_rate": [0.001, 0.01], "knn_k": [5]}}
