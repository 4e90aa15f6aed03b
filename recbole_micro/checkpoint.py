"""Checkpoints that load with ``torch.load(weights_only=True)`` (the default since torch 2.6).

RecBole stores its ``Config`` object in every checkpoint and writes pickle protocol 4, which the
weights-only unpickler cannot read. The plugin's trainers write protocol 2 and load with
``weights_only=True``, allowing exactly these non-tensor globals (checked by name before loading):

* RecBole's and the plugin's ``Config`` classes, RecBole's enums (``ModelType``, ``InputType``, …);
* recommender classes from ``recbole.model`` / ``recbole_micro.model`` (the config records its class);
* the YAML loader class the config keeps; numpy scalars and dtypes (best scores are numpy floats).

Trusted: constructing these classes runs no user code beyond their own unpickling (plain attribute
restores, enum look-ups, dtype construction). Anything else, e.g. an arbitrary function, is refused
before ``torch.load`` runs. A checkpoint is still only as trustworthy as the config it carries: load
files you or your colleagues wrote (the config names the data path the model is rebuilt from).

Besides RecBole's keys (``config``, ``epoch``, ``cur_step``, ``best_valid_score``, ``state_dict``,
``other_parameter``, ``optimizer``) a plugin checkpoint holds ``best_valid_result``, ``kind``
(``best``: written at a validation improvement; ``last``: the periodic resume point),
``best_checkpoint`` (path of the run's best checkpoint) and ``rng`` (every random stream training
draws from, as plain tensors/tuples), so that a resumed run continues exactly where it stopped.
"""

import enum
import importlib
import os
import random

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
        # under the name the file uses: numpy 1 writes numpy.core.*, numpy 2 numpy._core.*, and on the other
        # numpy that name resolves (through numpy's alias module) to an object whose own path differs
        own = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
        allowed.append(obj if own == name else (obj, name))
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} could not be read ({type(exc).__name__}: {exc}); use another checkpoint or retrain") from None
    missing = {"config", "state_dict"} - set(checkpoint if isinstance(checkpoint, dict) else ())
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {sorted(missing)}; it was not written by a RecBole trainer")
    # RecBole's Config.__init__ restores numpy aliases (np.float, ...) its dataset code still uses;
    # an unpickled Config skips __init__, so a fresh process that only loads a checkpoint needs them too.
    if hasattr(checkpoint["config"], "compatibility_settings"):
        checkpoint["config"].compatibility_settings()
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


def load_state(model, checkpoint, path):
    """``model.load_state_dict`` with one ``CheckpointError`` naming the first parameter that does not fit."""
    saved, own = checkpoint["state_dict"], model.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    shape = [k for k in own if k in saved and tuple(own[k].shape) != tuple(saved[k].shape)]
    if missing or unexpected or shape:
        if shape:
            k = shape[0]
            found = f"'{k}' has shape {tuple(saved[k].shape)} in the file but {tuple(own[k].shape)} in this model"
        elif missing:
            found = f"'{missing[0]}' is missing from the file ({len(missing)} parameters missing)"
        else:
            found = f"the file holds unknown parameter '{unexpected[0]}' ({len(unexpected)} unknown)"
        raise CheckpointError(
            f"checkpoint {path} does not fit this model: {found}; the data (items, users, modalities) or "
            f"model settings (embedding_size, cf_model, ...) changed since it was saved: use the same "
            f"data and config, or retrain"
        )
    model.load_state_dict(saved)
    model.load_other_parameter(checkpoint.get("other_parameter"))


def rng_state(generator=None):
    """The random streams a training epoch draws from, in types ``weights_only`` loading accepts:
    Python's and numpy's global generators (negative sampling), torch's (dropout, init) and the
    training dataloader's own ``generator`` (shuffling)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def set_rng_state(state, generator=None):
    """Restore what ``rng_state`` saved (missing parts are left as they are)."""
    if not state:
        return
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "loader" in state and generator is not None:
        generator.set_state(state["loader"].cpu())


def save_checkpoint(state, path):
    """Write ``state`` with pickle protocol 2 (weights-only loadable) via a temporary file, so an
    interrupted save never leaves a truncated checkpoint in place."""
    tmp = f"{path}.tmp"
    torch.save(state, tmp, pickle_protocol=2)
    os.replace(tmp, path)

