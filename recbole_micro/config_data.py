"""The resolved config as plain data: what a checkpoint stores instead of RecBole's ``Config`` object (whose
unpickling would ``eval()`` strings). ``config.config_from_data`` rebuilds a ``Config`` from it. Kept apart
from ``config.py`` so that the trainer, which writes checkpoints, does not import the ``Config`` class
(that import closed the circle config -> utils -> trainer -> config)."""

import enum
import os

import numpy as np

# Keys Config derives itself on every construction (rebuilt, never stored): model/input/evaluator types,
# the metric direction, the evaluation sampling of each phase and the device of this process.
DERIVED_KEYS = frozenset({
    "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "valid_metric_bigger", "valid_neg_sample_args",
    "test_neg_sample_args", "device", "single_spec", "local_rank",
})
# Keys of one multi-process run (quick_start.run): a saved config reloads as a single process.
PROCESS_KEYS = frozenset({"world_size", "nproc", "offset", "ip", "port"})


def plain_value(value):
    """``value`` as plain data (str, int, float, bool, None, lists, str-keyed dicts): enums by name,
    devices and other objects as strings, numpy scalars as Python numbers."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain_value(v) for k, v in value.items()}
    return str(value)


def data_root(config):
    """The folder holding ``<dataset>/`` as an absolute path (``config['data_path']`` is
    ``<root>/<dataset>`` once RecBole has resolved it)."""
    external = getattr(config, "external_config_dict", None) or {}
    internal = getattr(config, "internal_config_dict", None) or {}
    root = external.get("data_path") or internal.get("data_path")
    if not root:
        root = os.path.dirname(os.path.normpath(config["data_path"]))
    return os.path.abspath(root)


def config_to_data(config):
    r"""The resolved config as plain data: what a checkpoint stores instead of the ``Config`` object.

    Derived keys (``DERIVED_KEYS``: types, device, evaluation sampling) and those of a multi-process
    run (``PROCESS_KEYS``) are left out: ``config_from_data`` recomputes them, as a single process.
    ``data_path`` is the absolute folder holding the dataset's folder.
    """
    values = {k: plain_value(v) for k, v in config.final_config_dict.items()
              if k not in DERIVED_KEYS and k not in PROCESS_KEYS}
    values["data_path"] = data_root(config)
    neg = values.get("train_neg_sample_args")
    if isinstance(neg, dict) and neg.get("distribution") == "none":
        values["train_neg_sample_args"] = None  # RecBole's resolved form of "no negative sampling"
    return values
