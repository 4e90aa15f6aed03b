"""Checkpoints that hold data only, loaded with ``torch.load(weights_only=True)`` and no extra globals.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts; nothing in it names a Python
class or function, so loading one never runs code. RecBole stores its ``Config`` object (whose
``__init__`` ``eval()``s strings: a pickle calling it runs arbitrary code); the plugin's trainers store
the resolved config as plain data instead (``config_data.config_to_data``) and rebuild a ``Config`` from it
whose values are never evaluated (``config.config_from_data``). A file whose pickle needs any global
beyond torch's own tensor rebuilding is refused before unpickling, with one line naming the file and
the global. Tensors are always read onto the CPU (a GPU checkpoint loads on a CPU-only machine; RNG
states and Adam's step counters stay on the CPU); ``load_state_dict`` moves parameters and
optimiser moments to the model's device, ``load_state`` the other parameters (evaluation caches are
dropped: recomputed on the model's device).

Keys: RecBole's (``config``, ``epoch``, ``cur_step``, ``best_valid_score``, ``state_dict``,
``other_parameter``, ``optimizer``) plus ``best_valid_result`` (Python floats), ``kind`` (``best``:
written at a validation improvement; ``last``: the periodic resume point), ``best_checkpoint`` (path of
the run's best checkpoint), ``rng`` (every random stream training draws from, as tensors/tuples) and
``data`` (``token_ids.data_identity``: the user and item token of every internal id and a digest of the
training interactions, checked when the file is loaded).
"""

import itertools
import json
import os
import pickle
import random
import re
import tempfile

import numpy as np
import torch

from recbole_micro import other_parameters
from recbole_micro.checkpoint_fields import check_fields
from recbole_micro.errors import CheckpointError, ConfigError

FORMAT = 2  # checkpoint["format"]: 2 = data only (config as a dict, token lists)
_NOT_DATA = ("it was not written by this plugin's current version (or was altered): a checkpoint holds data "
             "only, this one needs Python objects to unpickle; nothing in it was run; retrain (a file you did "
             "not write yourself may be an attack: never load it with torch.load(weights_only=False))")


def _unsafe_globals(path):
    """Globals the pickle of ``path`` needs beyond torch's weights-only defaults (static scan, nothing
    is unpickled), with any process-wide ``add_safe_globals`` additions ignored."""
    extra = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    finally:
        if extra:
            torch.serialization.add_safe_globals(extra)


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint written by a plugin trainer onto the CPU; one clear ``CheckpointError`` otherwise."""
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist; pass the .pth file a training run saved")
    try:
        names = _unsafe_globals(path)
    except Exception as exc:  # zip/pickle errors of a truncated or foreign file
        raise CheckpointError(
            f"checkpoint {path} is corrupt, truncated or not a torch checkpoint ({type(exc).__name__}: {exc}); "
            f"use another checkpoint or retrain"
        ) from None
    if names:
        more = f" and {len(names) - 1} more" if len(names) > 1 else ""
        raise CheckpointError(f"checkpoint {path} refused: it holds '{names[0]}'{more}, so {_NOT_DATA}")
    extra = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # a global the static scan could not see
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f"it holds '{found.group(1)}'" if found else "its pickle is not data only"
        raise CheckpointError(f"checkpoint {path} refused ({what}): {_NOT_DATA}") from None
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} could not be read ({type(exc).__name__}: {exc}); use another checkpoint or retrain") from None
    finally:
        if extra:
            torch.serialization.add_safe_globals(extra)
    if not isinstance(checkpoint, dict) or not {"config", "state_dict"} <= set(checkpoint):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"checkpoint {path} holds {found}, not a training checkpoint (config, state_dict); "
                              f"it was not written by a RecBole trainer")
    config = checkpoint["config"]
    if not isinstance(config, dict) or not all(isinstance(config.get(k), str) for k in ("model", "dataset")):
        raise CheckpointError(f"checkpoint {path} holds no config with 'model' and 'dataset' names; it was not "
                              f"written by this plugin's current version: retrain")
    check_fields(checkpoint, path)  # a malformed epoch, rng, optimizer, data or state_dict: one line
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
    try:
        extra = other_parameters.from_data(checkpoint.get("other_parameter"))
    except (ValueError, TypeError, IndexError) as error:  # scipy's own checks of an altered matrix
        raise CheckpointError(f"checkpoint {path} holds a malformed matrix in 'other_parameter' ({error}); use "
                              f"another checkpoint or retrain") from None
    model.load_other_parameter(other_parameters_for(model, extra))


def other_parameters_for(model, saved):
    """RecBole's ``other_parameter`` of a checkpoint (read onto the CPU), fit for ``model``: evaluation caches
    (``restore_*``, RecBole's name for them) are dropped and recomputed at the next prediction, every other
    tensor moves to the model's device. Put back as read, a GPU model would index a CPU cache with device
    ids at its first ``full_sort_predict`` (issue 21)."""
    if not saved:
        return saved
    device = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = device.device if device is not None else getattr(model, "device", "cpu")

    def move(value):
        if isinstance(value, torch.Tensor):
            return value.to(device)
        if isinstance(value, (list, tuple)):
            return type(value)(move(v) for v in value)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    return {key: None if key.startswith("restore_") else move(value) for key, value in saved.items()}


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
        np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])  # CPU byte tensors, as CUDA requires
    if "loader" in state and generator is not None:
        generator.set_state(state["loader"].cpu())


def plain_numbers(result):
    """A metrics dict (numpy scalars from RecBole's evaluator) as ``{str: float}``."""
    return {str(k): float(v) for k, v in (result or {}).items()}


def save_checkpoint(state, path):
    """Write ``state`` with pickle protocol 2 (weights-only loadable) via a temporary file, so an
    interrupted save never leaves a truncated checkpoint in place (nor the temporary file: Ctrl-C, SIGTERM)."""
    tmp = f"{path}.tmp"
    try:
        torch.save(state, tmp, pickle_protocol=2)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def last_checkpoint(checkpoint):
    """The periodic resume point the trainer writes beside a run's best checkpoint."""
    return os.path.splitext(checkpoint)[0] + "-last.pth"


def resume_point(checkpoint):
    """The newer of ``<checkpoint>-last.pth`` and ``<checkpoint>`` (both hold the full training state),
    or None when training never reached a save."""
    found = [p for p in (last_checkpoint(checkpoint), checkpoint) if p and os.path.isfile(p)]
    return max(found, key=os.path.getmtime) if found else None


def best_checkpoint_of(resume_file, kind):
    """The best checkpoint a resume point belongs to, derived from the name the user gave
    (``<stem>-last.pth`` -> ``<stem>.pth``, beside it): the ``best_checkpoint`` path stored in the file is never
    used, so a shared file cannot choose what ``--resume`` overwrites."""
    if kind != "last":
        return resume_file
    if not resume_file.endswith("-last.pth"):
        raise CheckpointError(
            f"checkpoint {resume_file} is a resume point (kind 'last') but its name does not end in -last.pth; the "
            f"run's best checkpoint is named after it: rename it to <name>-last.pth (the best one is <name>.pth)")
    return resume_file[: -len("-last.pth")] + ".pth"


def check_run_checkpoint(path, folder, where):
    """``path`` -- a checkpoint named by a results JSON or tuning export, to be written on ``--resume`` -- as an
    absolute path when it is a ``.pth`` file right inside ``folder`` (the run's ``checkpoint_dir``, named by the
    user); one-line ``ConfigError`` otherwise (a file must not choose where the program writes)."""
    inside = os.path.abspath(str(folder))
    found = os.path.abspath(path) if isinstance(path, str) and path.endswith(".pth") else None
    if found is None or os.path.dirname(found) != inside or os.path.basename(found).endswith("-last.pth"):
        raise ConfigError(
            f"{where}: checkpoint {path!r} is not a .pth file in this run's checkpoint_dir {inside}; a file cannot "
            f"choose where a run writes: pass the --checkpoint_dir the run used, or drop --resume to start afresh")
    return found


def claim_checkpoint(path):
    """A best-checkpoint name no other run has: ``path`` (``<stem>.pth``), else ``<stem>-2.pth``, ``-3``, ...
    claimed by creating the run record ``<stem>.json`` exclusively (``O_EXCL``), so of two jobs started in the
    same second each gets its own files; the record is rewritten with the result when the run ends."""
    stem = os.path.splitext(str(path))[0]
    folder = os.path.dirname(os.path.abspath(stem))
    try:
        os.makedirs(folder, exist_ok=True)
        for number in itertools.count(1):
            candidate = stem if number == 1 else f"{stem}-{number}"
            if any(os.path.exists(candidate + end) for end in (".pth", "-last.pth")):
                continue
            try:
                handle = os.open(candidate + ".json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(handle, "w", encoding="utf-8") as f:
                json.dump({"status": "running", "checkpoint": candidate + ".pth", "pid": os.getpid()}, f)
            return candidate + ".pth"
    except OSError as exc:
        raise ConfigError(f"checkpoint_dir {folder} cannot be written ({exc.strerror or exc}); pass a writable "
                          f"--checkpoint_dir") from None


def nonfinite_parameter(model):
    """The name of the first parameter of ``model`` holding NaN or Inf, or None: one host-device sync."""
    named = [(name, p) for name, p in model.named_parameters() if p.is_floating_point()]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named])
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0, 0])][0]


def check_finite_weights(model, path):
    """Refuse a checkpoint whose weights (loaded into ``model``) are not finite: a diverged run."""
    name = nonfinite_parameter(model)
    if name is not None:
        raise CheckpointError(
            f"checkpoint {path} holds non-finite weights (parameter '{name}' is NaN or Inf): the run that saved it "
            f"diverged; retrain with a lower learning_rate")


def check_checkpoint_dir(folder):
    """Create ``checkpoint_dir`` and prove it writable (a probe file is created and removed) before any data
    is loaded or epoch trained; one ``ConfigError`` naming the folder (or the regular file in its way)."""
    folder = os.path.abspath(str(folder))
    existing = folder
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"checkpoint_dir {folder} cannot be created: {existing} is a regular file, not a folder; "
                          f"pass --checkpoint_dir=<a writable folder>")
    try:
        os.makedirs(folder, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
        os.close(handle)
        os.remove(probe)
    except OSError as exc:
        raise ConfigError(f"checkpoint_dir {folder} cannot be written ({exc.strerror or exc}); pass "
                          f"--checkpoint_dir=<a writable folder>") from None
    return folder
