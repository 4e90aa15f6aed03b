"""Checkpoints that load with ``torch.load(weights_only=True)`` (the default since torch 2.6).

RecBole stores its ``Config`` object in every checkpoint and writes pickle protocol 4, which the
weights-only unpickler cannot read. The plugin's trainers write protocol 2 and load with
``weights_only=True``, allowing exactly these non-tensor globals (checked by name before loading):

* RecBole's and the plugin's ``Config`` classes, RecBole's enums (``ModelType``, ``InputType``, …);
* recommender classes from ``recbole.model`` / ``recbole_micro.model`` (the config records its class);
* the YAML loader class the config keeps; numpy scalars and dtypes (best scores are numpy floats).

Trusted: constructing these classes runs no user code beyond their own unpickling (plain attribute
restores, enum look-ups, dtype construction). Anything else, e.g. an arbitrary function, is refused.
"""

import enum
import importlib
import os

import numpy as np
import torch
from recbole.config import Config as RecBoleConfig
from recbole.model.abstract_recommender import AbstractRecommender

from recbole_micro.errors import CheckpointError

_TRUSTED_YAML = {f"yaml.loader.{n}" for n in ("BaseLoader", "SafeLoader", "FullLoader", "Loader")}
_TRUSTED_NUMPY = {"numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype"}


_NUMPY_DTYPES = tuple(getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType"))


def _resolve(name):
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def _trusted(name):
    """The object behind a global ``name`` if the allow-list above admits it, else None."""
    obj = _resolve(name)
    if obj is None:
        return None
    if name in _TRUSTED_NUMPY or name.startswith("numpy.dtypes."):
        return obj
    if not isinstance(obj, type):
        return None
    if name.startswith(("recbole.", "recbole_micro.")) and (
        issubclass(obj, (RecBoleConfig, AbstractRecommender)) or issubclass(obj, enum.Enum)
    ):
        return obj
    if name in _TRUSTED_YAML:
        return obj
    return None


def load_checkpoint(path, map_location=None):
    """Load a checkpoint written by a plugin trainer; one clear ``CheckpointError`` otherwise."""
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist; pass the .pth file a training run saved")
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # zip/pickle errors of a truncated or foreign file
        raise CheckpointError(
            f"checkpoint {path} is corrupt, truncated or not a torch checkpoint ({type(exc).__name__}: {exc}); "
            f"use another checkpoint or retrain"
        ) from None
    allowed = list(_NUMPY_DTYPES)  # built by numpy.dtype's reduce, not listed by the scan above
    for name in names:
        obj = _trusted(name)
        if obj is None:
            raise CheckpointError(
                f"checkpoint {path} holds '{name}', which is not on the allow-list of recbole_micro/checkpoint.py; "
                f"refusing to unpickle it (if you wrote and trust this file, load it with torch.load(weights_only=False))"
            )
        allowed.append(obj)
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} could not be read ({type(exc).__name__}: {exc}); use another checkpoint or retrain") from None
    missing = {"config", "state_dict"} - set(checkpoint if isinstance(checkpoint, dict) else ())
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {sorted(missing)}; it was not written by a RecBole trainer")
    return checkpoint


def check_compatible(checkpoint, config, path):
    """Refuse a checkpoint of another model or dataset (the state dict would not fit)."""
    saved = checkpoint["config"]
    for key in ("model", "dataset"):
        if str(saved[key]) != str(config[key]):
            raise CheckpointError(
                f"checkpoint {path} was trained with {key} '{saved[key]}', but this run uses '{config[key]}'; "
                f"pass --{key}={saved[key]} or another checkpoint"
            )


def save_checkpoint(state, path):
    """Write ``state`` with pickle protocol 2 (weights-only loadable) via a temporary file, so an
    interrupted save never leaves a truncated checkpoint in place."""
    tmp = f"{path}.tmp"
    torch.save(state, tmp, pickle_protocol=2)
    os.replace(tmp, path)

