"""Find models, datasets and trainers by name, the plugin's first, then RecBole's.

The RecBole-GNN pattern: ``get_model("MICRO")`` imports ``recbole_micro.model.micro``; any other name
(``BPR``, ``LightGCN``, …) falls back to RecBole, so one entry point runs the plugin's models and
RecBole's baselines on the same data.
"""

import difflib
import functools
import importlib
import os
import re

import recbole
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

import recbole_micro.properties
from recbole_micro.data.caches import close_model_loaders, dataset_class as recbole_dataset_class
from recbole_micro.errors import ConfigError, DatasetNotFoundError

PROPERTIES_DIR = os.path.dirname(os.path.abspath(recbole_micro.properties.__file__))
PLUGIN_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model")
#: RecBole's model packages, in the order its ``get_model`` searches them.
RECBOLE_MODEL_PACKAGES = ("general_recommender", "context_aware_recommender", "sequential_recommender",
                          "knowledge_aware_recommender", "exlib_recommender")


@functools.lru_cache(maxsize=1)
def model_names():
    r"""``{name: module}`` of every model found by name, read from the source files (nothing imported):
    the plugin's (``recbole_micro/model/<name>.py`` defining class ``<Name>``) and RecBole's (the
    classes its model packages' ``__init__.py`` import)."""
    names = {}
    recbole_model_dir = os.path.join(os.path.dirname(os.path.abspath(recbole.__file__)), "model")
    for package in RECBOLE_MODEL_PACKAGES:
        init = os.path.join(recbole_model_dir, package, "__init__.py")
        if os.path.isfile(init):
            with open(init, encoding="utf-8") as f:
                for module, cls in re.findall(r"^from (recbole\.model\.[\w.]+) import (\w+)", f.read(), re.M):
                    names.setdefault(cls, module)
    for file in sorted(os.listdir(PLUGIN_MODEL_DIR)):
        stem, ext = os.path.splitext(file)
        if ext == ".py":
            with open(os.path.join(PLUGIN_MODEL_DIR, file), encoding="utf-8") as f:
                for cls in re.findall(r"^class (\w+)\(", f.read(), re.M):
                    if cls.lower() == stem:
                        names[cls] = f"recbole_micro.model.{stem}"  # the plugin's model wins
    return names


def unknown_model_message(model_name, names=None):
    """One line for a model name that is not a model: the closest names (case-insensitive), the fix."""
    names = sorted(names or model_names())
    lower = {n.lower(): n for n in names}
    key = str(model_name).lower()
    close = [lower[key]] if key in lower else [
        lower[n] for n in difflib.get_close_matches(key, list(lower), n=4, cutoff=0.6)]
    hint = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
    plugin = [n for n, m in model_names().items() if m.startswith("recbole_micro.")]
    return (f"model {model_name!r} is not a known model (names are case-sensitive{hint}): use one of the plugin's "
            f"models ({', '.join(sorted(plugin))}) or a RecBole model name such as BPR, LightGCN or NGCF")


def get_model(model_name):
    r"""Model class named ``model_name``: ``recbole_micro.model.<lowercase name>.<name>`` or RecBole's.

    An unknown or miscased name (``lightgcn``) is a ``ConfigError`` listing the close names; RecBole's own
    look-up would report a missing optional package instead ("No module named 'lightgbm'").
    """
    names = model_names()
    if not isinstance(model_name, str) or model_name not in names:
        raise ConfigError(unknown_model_message(model_name, names))
    if names[model_name].startswith("recbole_micro."):
        return getattr(importlib.import_module(names[model_name]), model_name)
    try:
        return close_model_loaders(recbole_get_model(model_name))
    except ImportError as exc:  # RecBole's exlib models need packages of their own
        raise ConfigError(
            f"model {model_name!r} needs the package {exc.name!r}, which is not installed: pip install {exc.name}"
        ) from None


def get_trainer(model_type, model_name):
    r"""``recbole_micro.trainer.<Model>Trainer`` if it exists, else RecBole's trainer for the model.

    RecBole's trainers are wrapped so their checkpoints load on torch ≥ 2.6 (see ``checkpoint.py``).
    """
    trainer_module = importlib.import_module("recbole_micro.trainer")
    if hasattr(trainer_module, f"{model_name}Trainer"):
        return getattr(trainer_module, f"{model_name}Trainer")
    return trainer_module.with_safe_checkpoints(recbole_get_trainer(model_type, model_name))


def create_dataset(config):
    r"""``<Model>Dataset`` from ``recbole_micro.data.dataset`` if it exists; ``MultimodalDataset`` when
    the config names ``modalities`` (so baselines see the same items as MICRO); else the class RecBole's
    ``create_dataset`` picks, always built from the atomic files (never RecBole's pickled dataset cache:
    ``data.caches``)."""
    check_split_files(config)
    dataset_module = importlib.import_module("recbole_micro.data.dataset")
    dataset_class = getattr(dataset_module, f"{config['model']}Dataset", None)
    if dataset_class is None and config["modalities"]:
        dataset_class = dataset_module.MultimodalDataset
    return (dataset_class or recbole_dataset_class(config))(config)


def check_split_files(config):
    """Every ``<dataset>.<split>.inter`` that ``benchmark_filename`` names exists (RecBole would raise a
    bare ``ValueError`` after loading the others)."""
    from recbole_micro.data.dataset import name_list

    splits = config["benchmark_filename"]
    if isinstance(splits, str):  # --benchmark_filename=[train,valid,test] on the command line
        config["benchmark_filename"] = splits = name_list(splits)
    for key in ("benchmark_filename", "additional_feat_suffix"):  # parts of file names <dataset>.<part>[.inter]
        for part in (splits if key == "benchmark_filename" else config[key]) or []:
            if not isinstance(part, str) or not part or any(c in part for c in "/\\") or part in (".", ".."):
                raise ConfigError(f"config key '{key}' holds {part!r}; its entries name files <dataset>.<entry> in "
                                  f"the dataset's folder: use plain names such as 'train' (no '/')")
    if not splits:
        return
    folder, name = config["data_path"], config["dataset"]
    missing = [s for s in splits if not os.path.isfile(os.path.join(folder, f"{name}.{s}.inter"))]
    if missing:
        files = os.listdir(folder) if os.path.isdir(folder) else []
        present = sorted(f[len(name) + 1 : -len(".inter")] for f in files
                         if f.startswith(f"{name}.") and f.endswith(".inter") and f != f"{name}.inter")
        raise DatasetNotFoundError(
            f"{os.path.join(folder, f'{name}.{missing[0]}.inter')}: split file not found "
            f"(benchmark_filename is {list(splits)}; split files present: {present or 'none'}); "
            f"fix benchmark_filename in {name}.yaml or your config, or add the missing file"
        )
