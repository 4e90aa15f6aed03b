"""What each field of a data-only checkpoint must hold, checked once when the file is loaded.

``torch.load(weights_only=True)`` guarantees that a checkpoint holds data only, not that the data has the
shape the trainer and ``recommend`` use (a file may be altered or written by something else). Each field
is checked here, so a malformed one is one ``CheckpointError`` naming the file, the field and what it
holds, instead of a ``TypeError`` deep inside training. The random states are tried on scratch generators
(nothing global changes); the optimizer state is checked for its layout (whether it fits the model's
parameter groups is known only at ``load_state_dict``).
"""

import numbers
import random

import numpy as np
import torch

from recbole_micro import other_parameters
from recbole_micro.errors import CheckpointError

KINDS = ("best", "last")


def _what(value):
    text = repr(value)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} (a {type(value).__name__})"


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_str_list(value):
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _tensors(value):
    """The first key of the dict ``value`` whose value is not a tensor, '' when all are, None when ``value`` is no
    dict."""
    if not isinstance(value, dict):
        return None
    for key, item in value.items():
        if not isinstance(key, str) or not torch.is_tensor(item):
            return key if isinstance(key, str) else repr(key)
    return ""


def _rng_problem(state):
    """Why the saved random states cannot be restored ('' when they can), tried on scratch generators."""
    if not isinstance(state, dict):
        return f"is {_what(state)}; it must be a dict of random states"
    try:
        if "python" in state:
            version, internal, gauss = state["python"]
            random.Random().setstate((version, tuple(internal), gauss))
        if "numpy" in state:
            kind, keys, pos, has_gauss, gauss = state["numpy"]
            np.random.RandomState().set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
        for name in ("torch", "loader"):
            if name in state:
                torch.Generator().set_state(state[name].cpu())
        if "cuda" in state and not all(torch.is_tensor(s) and s.dtype == torch.uint8 for s in state["cuda"]):
            raise TypeError("'cuda' must be a list of byte tensors")
    except Exception as exc:  # every way a malformed state fails: TypeError, ValueError, RuntimeError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"cannot be restored ({type(exc).__name__}: {first[:120]})"
    return ""


def _optimizer_problem(state):
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
        return f"is {_what(state)}; it must be an optimizer state_dict (a dict with 'state' and 'param_groups')"
    groups = state.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                               and all(_is_int(p) for p in g["params"]) for g in groups):
        return f"has 'param_groups' {_what(groups)}; it must be a list of dicts with integer 'params'"
    return ""


def _data_problem(data):
    if data is None:
        return ""
    if not isinstance(data, dict):
        return f"is {_what(data)}; it must be the token ids of the training data (a dict)"
    for key, ok, rule in (("user_field", isinstance(data.get("user_field"), str), "a field name"),
                          ("item_field", isinstance(data.get("item_field"), str), "a field name"),
                          ("user_tokens", _is_str_list(data.get("user_tokens")), "a list of tokens"),
                          ("item_tokens", _is_str_list(data.get("item_tokens")), "a list of tokens"),
                          ("train_pairs", _is_int(data.get("train_pairs")), "an integer"),
                          ("train_digest", isinstance(data.get("train_digest"), str), "a hex digest")):
        if not ok:
            return f"has '{key}' {_what(data.get(key))}; it must be {rule}"
    return ""


def _problem(name, value):
    """Why field ``name`` holding ``value`` is malformed ('' when it is fine)."""
    if name == "state_dict":
        bad = _tensors(value)
        if bad is None:
            return f"is {_what(value)}; it must map parameter names to tensors"
        return f"has '{bad}' = {_what(value[bad])}; every parameter must be a tensor" if bad else ""
    if name == "other_parameter":
        found = other_parameters.problem(value)
        return f"is {_what(value)}; {found}" if found.startswith("it ") else found
    if name in ("epoch", "cur_step"):  # RecBole saves epoch -1 when a run starts with no epoch left to train
        low = -1 if name == "epoch" else 0
        return "" if _is_int(value) and value >= low else f"is {_what(value)}; it must be an integer >= {low}"
    if name == "best_valid_score":
        return "" if _is_number(value) else f"is {_what(value)}; it must be a number"
    if name == "best_valid_result":
        ok = value is None or (isinstance(value, dict) and all(isinstance(k, str) and _is_number(v)
                                                               for k, v in value.items()))
        return "" if ok else f"is {_what(value)}; it must map metric names to numbers"
    if name == "kind":
        return "" if value in KINDS else f"is {_what(value)}; it must be one of {list(KINDS)}"
    if name == "rng":
        return _rng_problem(value)
    if name == "optimizer":
        return _optimizer_problem(value)
    if name == "data":
        return _data_problem(value)
    return ""


FIELDS = ("state_dict", "other_parameter", "epoch", "cur_step", "best_valid_score", "best_valid_result", "kind",
          "optimizer", "rng", "data")


def check_fields(checkpoint, path):
    """One ``CheckpointError`` for the first malformed field of a loaded checkpoint dict (absent optional
    fields are fine: ``state_dict`` and ``config`` are checked by the loader)."""
    for name in FIELDS:
        if name not in checkpoint:
            continue
        problem = _problem(name, checkpoint[name])
        if problem:
            raise CheckpointError(f"checkpoint {path}: field '{name}' {problem}; the file was altered or is "
                                  f"corrupt (nothing in it was run): use another checkpoint or retrain")
