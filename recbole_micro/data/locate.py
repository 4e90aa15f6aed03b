"""Find a dataset's atomic files (building the embedded default on first use) and check the yaml files
a run reads.

``ensure_dataset`` runs when a ``Config`` is made, so a missing dataset or a broken dataset yaml fails
fast with one message that says how to fix it, before any model is built.
"""

import os

import yaml

from recbole_micro.errors import ConfigError, DatasetNotFoundError

# Public multimodal datasets users download, and the converter command for each layout.
KNOWN_SOURCES = {
    "baby": "python -m recbole_micro.data lattice ../shared/data/baby --name baby",
    "sports": "python -m recbole_micro.data lattice <LATTICE data>/sports --name sports",
    "clothing": "python -m recbole_micro.data lattice <LATTICE data>/clothing --name clothing",
}


def has_atoms(folder, name):
    """True when ``folder`` holds interaction atoms of dataset ``name``."""
    if not os.path.isdir(folder):
        return False
    return any(f.startswith(f"{name}.") and f.endswith(".inter") for f in os.listdir(folder))


def check_yaml_file(path, what="config file"):
    """One clear line (``ConfigError``) for a yaml file that is missing, not UTF-8, not valid yaml (with
    the line and column) or not a ``key: value`` mapping. Only parses: nothing is constructed."""
    if not os.path.isfile(path):
        raise ConfigError(f"{what} {path} not found; check the path (--config_files takes comma-separated yaml files)")
    try:
        with open(path, encoding="utf-8") as f:
            node = yaml.compose(f, Loader=yaml.SafeLoader)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the {what} is not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        if exc.context and exc.context_mark and mark and exc.context_mark.line != mark.line:
            problem += f"; {' '.join(exc.context.split())} that starts on line {exc.context_mark.line + 1}"
        raise ConfigError(f"{path}: the {what} is not valid yaml at {where} ({problem}); fix the yaml there "
                          f"(each line is `key: value`)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: the {what} is not valid yaml ({' '.join(str(exc).split())})") from None
    if node is not None and not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}: the {what} must be a mapping of `key: value` lines, found a yaml "
                          f"{'list' if isinstance(node, yaml.SequenceNode) else 'scalar'}")
    tagged = _foreign_tag(node)
    if tagged is not None:
        mark = tagged.start_mark
        tag = tagged.tag.replace(_YAML_TAG, "!!")
        raise ConfigError(f"{path}: the {what} has the tag '{tag}' at line {mark.line + 1}, column {mark.column + 1}; "
                          f"yaml files hold plain values only (tags that build Python objects are refused, "
                          f"nothing was run): remove the tag")
    return path


_YAML_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_YAML_TAG + t for t in ("null", "bool", "int", "float", "str", "seq", "map", "merge", "value",
                                       "timestamp", "binary", "set", "omap", "pairs")}


def _foreign_tag(node):
    """The first node (depth first) whose tag yaml's safe loader cannot build from plain values
    (``!!python/...``, ``!custom``), or None."""
    stack = [node] if node is not None else []
    while stack:
        node = stack.pop()
        if node.tag not in _PLAIN_TAGS:
            return node
        if isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                stack.extend((value, key))
    return None


def ensure_dataset(name, data_path):
    """Return the dataset folder ``<data_path>/<name>``; build the default one if it is missing.

    The dataset's own yaml (``<name>.yaml`` in that folder) is checked too; a name that is no plain
    folder name (``../../etc``) is refused with the converter's own rule.
    """
    from recbole_micro.data.convert import ConversionError, check_dataset_name
    from recbole_micro.data.default import DEFAULT_DATASET, build_default_dataset

    folder = os.path.join(data_path, name)
    if has_atoms(folder, name):
        own = os.path.join(folder, f"{name}.yaml")
        if os.path.isfile(own):
            check_yaml_file(own, "dataset yaml")
        return folder
    if name == DEFAULT_DATASET:
        return build_default_dataset(out=data_path)
    try:
        check_dataset_name(name)
    except ConversionError:
        raise DatasetNotFoundError(
            f"dataset {name!r} is not a dataset name: --dataset takes the name of a folder under data_path "
            f"({data_path}), without '/', '..' or spaces; to use data elsewhere, set --data_path=<folder that "
            f"holds it> and --dataset=<its name>"
        ) from None
    how = KNOWN_SOURCES.get(
        name.lower(),
        f"python -m recbole_micro.data lattice <folder with 5-core/*.json and <modality>_feat.npy> --name {name}"
        f"  (or: python -m recbole_micro.data mmrec <folder with {name}.inter and *_feat.npy> --name {name})",
    )
    raise DatasetNotFoundError(
        f"dataset '{name}' has no atomic files in {folder}/; convert it first: {how}"
        + (" (Amazon Baby: see ../shared/data/README.md)" if name.lower() == "baby" else "")
    )
