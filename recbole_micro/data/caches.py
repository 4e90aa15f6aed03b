r"""RecBole's pickle caches, closed: the plugin never reads (nor writes) a dataset or dataloader cache.

RecBole 1.2.1 unpickles two caches (``recbole/data/utils.py``), and unpickling runs whatever code the
file names:

* ``create_dataset`` loads ``dataset_save_path``, or ``<checkpoint_dir>/<dataset>-<Dataset class>.pth``
  when that file merely exists (``save_dataset: True`` writes it);
* ``data_preparation`` → ``load_split_dataloaders`` loads ``dataloaders_save_path``, or
  ``<checkpoint_dir>/<dataset>-for-<model>-dataloader.pth`` when that file merely exists
  (``save_dataloaders: True`` writes it).

Here the dataset class is chosen as RecBole chooses it and built from the atomic files
(``dataset_class``), and ``data_preparation`` is RecBole's own function whose
``load_split_dataloaders`` finds nothing and whose ``save_split_dataloaders`` refuses: no file in any
folder is ever unpickled, whatever its name. The four keys that would switch the caches on are refused
with one line from every source (``check_cache_keys``: yaml files, ``config_dict``, the command line,
a checkpoint's stored config). One more RecBole loader unpickles a file lying in the data folder:
LDiffRec's ``item_emb.npy`` (RecBole loads it with numpy's pickle switch on); ``close_model_loaders``
makes it read arrays only.
"""

import functools
import importlib
import types

import numpy as np
from recbole.data import utils as recbole_data_utils
from recbole.utils import ModelType

from recbole_micro.errors import ConfigError

#: Config keys that make RecBole write (and later unpickle) its caches; refused unless at their default.
CACHE_KEYS = {"save_dataset": False, "dataset_save_path": None, "save_dataloaders": False,
              "dataloaders_save_path": None}
_WHY = ("the plugin never reads or writes RecBole's dataset/dataloader caches (they are pickles, and loading "
        "a pickle runs the code it names)")


def cache_key_set(values):
    """``(key, value)`` of the first cache key ``values`` sets away from its default, or None."""
    for key, default in CACHE_KEYS.items():
        value = values.get(key, default)
        if value not in (default, None, False, ""):
            return key, value
    return None


def check_cache_keys(values, where):
    """One-line ``ConfigError`` when ``values`` (a config mapping from ``where``) switches a cache on."""
    found = cache_key_set(values)
    if found:
        key, value = found
        raise ConfigError(f"{where}: config key '{key}' is {value!r}; {_WHY}: remove it (the data is read "
                          f"from the atomic files every run)")


def dataset_class(config):
    """The dataset class RecBole's ``create_dataset`` picks (``<model>Dataset``, else by model type)."""
    module = importlib.import_module("recbole.data.dataset")
    own = getattr(module, f"{config['model']}Dataset", None)
    if own is not None:
        return own
    by_type = {ModelType.SEQUENTIAL: "SequentialDataset", ModelType.KNOWLEDGE: "KnowledgeBasedDataset"}
    return getattr(module, by_type.get(config["MODEL_TYPE"], "Dataset"))


def _no_saved_dataloaders(config):
    return None  # never look for a dataloader cache, whatever lies in checkpoint_dir


def _refuse_saving(config, dataloaders):
    check_cache_keys({"save_dataloaders": True}, "data_preparation")


def _without_caches(function):
    """A copy of RecBole's ``function`` whose cache loader/saver look-ups see the closed versions
    (RecBole's module is untouched)."""
    scope = dict(function.__globals__, load_split_dataloaders=_no_saved_dataloaders,
                 save_split_dataloaders=_refuse_saving)
    copy = types.FunctionType(function.__code__, scope, function.__name__, function.__defaults__,
                              function.__closure__)
    copy.__kwdefaults__ = function.__kwdefaults__
    return functools.update_wrapper(copy, function)


#: RecBole's ``data_preparation`` (split, samplers, dataloaders) without its dataloader cache.
data_preparation = _without_caches(recbole_data_utils.data_preparation)


class _ArraysOnly(types.ModuleType):
    """numpy seen through a ``load`` that never unpickles (``allow_pickle`` forced off)."""

    def __init__(self):
        super().__init__("numpy")

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def load(*args, **kwargs):
        kwargs["allow_pickle"] = False
        return np.load(*args, **kwargs)


def close_model_loaders(model_class):
    """RecBole's LDiffRec reads ``<data folder>/item_emb.npy`` with ``allow_pickle=True``: its module's numpy
    look-up becomes arrays-only (an object array is then refused by numpy instead of unpickled)."""
    module = importlib.import_module(model_class.__module__)
    if model_class.__name__ == "LDiffRec" and getattr(module, "np", None) is np:
        module.np = _ArraysOnly()
    return model_class
