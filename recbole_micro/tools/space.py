r"""Search spaces: ``.hyper`` files in RecBole's format, one parameter a line, ``#`` comments allowed::

    learning_rate choice [1e-4, 5e-4, 1e-3, 5e-3]
    lambda_coeff uniform 0.5,1.0
    knn_k quniform 5,20,5
    reg_weight loguniform -11.5,-4.6        # natural-log bounds, as in hyperopt / RecBole

``choice`` lists are read as Python *literals* (``ast.literal_eval``: data only, nothing runs); their
values are then checked against the model's configuration by ``values.typed_value`` before any trial.
``--params_file MICRO`` finds the shipped ``properties/hyper/MICRO.hyper``; a path works too.
"""

import ast
import math
import os

from recbole_micro.errors import ConfigError
from recbole_micro.tools.values import check_key, typed_value
from recbole_micro.utils import PROPERTIES_DIR

HYPER_DIR = os.path.join(PROPERTIES_DIR, "hyper")
PARAM_TYPES = ("choice", "uniform", "quniform", "loguniform")


def find_params_file(name_or_path):
    """A ``.hyper`` file: an existing path, or a shipped space by name (``MICRO`` → ``hyper/MICRO.hyper``)."""
    if os.path.isfile(name_or_path):
        return os.path.abspath(name_or_path)
    name = os.path.basename(name_or_path)
    name = name[: -len(".hyper")] if name.endswith(".hyper") else name
    shipped = os.path.join(HYPER_DIR, f"{name}.hyper")
    if os.path.isfile(shipped):
        return shipped
    available = ", ".join(shipped_spaces()) or "none"
    raise ConfigError(f"params file '{name_or_path}' not found: give a path to a .hyper file or one of the "
                      f"shipped spaces ({available})")


def shipped_spaces():
    """Names of the search spaces shipped in ``properties/hyper/``."""
    if not os.path.isdir(HYPER_DIR):
        return []
    return sorted(f[: -len(".hyper")] for f in os.listdir(HYPER_DIR) if f.endswith(".hyper"))


def read_hyper_file(path):
    r"""Parse a ``.hyper`` file into RecBole's ``params_dict`` layout ``{type: {name: value}}``.

    ``choice`` values are Python literals (lists); ``uniform`` / ``loguniform`` take ``low,high`` and
    ``quniform`` ``low,high,q`` (loguniform bounds are natural logs, as in hyperopt).
    """
    spec = {}
    with open(path, encoding="utf-8-sig") as f:  # a UTF-8 BOM (Windows editors) is not part of the first key
        for number, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) < 3 or parts[1] not in PARAM_TYPES:
                raise ConfigError(f"{path}:{number}: expected '<name> <{'|'.join(PARAM_TYPES)}> <values>', "
                                  f"got '{line}'")
            name, kind, text = parts[0], parts[1], line.split(None, 2)[2]
            try:
                if kind == "choice":
                    value = ast.literal_eval(text)
                    if not isinstance(value, (list, tuple)) or not value:
                        raise ValueError("a non-empty list is needed")
                    value = list(value)
                else:
                    value = [float(v) for v in text.split(",")]
                    if len(value) != (3 if kind == "quniform" else 2):
                        raise ValueError(f"{kind} takes {'low,high,q' if kind == 'quniform' else 'low,high'}")
                    if not all(math.isfinite(v) for v in value) or value[0] >= value[1]:
                        raise ValueError("finite bounds with low < high are needed")
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as error:
                raise ConfigError(f"{path}:{number}: bad values '{text}' for {name} ({error})") from None
            if any(name in group for group in spec.values()):
                raise ConfigError(f"{path}:{number}: parameter '{name}' is defined twice")
            spec.setdefault(kind, {})[name] = value
    if not spec:
        raise ConfigError(f"{path}: no parameters found")
    return spec


def check_space(spec, known, path):
    r"""The space with every ``choice`` value typed for its key (``values.typed_value``); continuous ranges
    are numbers already. Refuses unknown keys and values of the wrong type before any trial runs."""
    checked = {}
    for kind, params in spec.items():
        for name, values in params.items():
            where = f"{path}: {name} {kind}"
            check_key(name, known, path)
            if kind == "choice":
                checked.setdefault(kind, {})[name] = [typed_value(name, v, known[name], where) for v in values]
            else:
                typed_value(name, values[0], known[name], where)  # a numeric key
                checked.setdefault(kind, {})[name] = list(values)
    return checked


def space_size(spec):
    """Number of grid points of an all-``choice`` space (None when a parameter is continuous)."""
    if set(spec) - {"choice"}:
        return None
    return math.prod(len(v) for v in spec["choice"].values())


def ray_space(spec, algo):
    """The search space for Ray Tune: grid_search for ``exhaustive``, samplers for ``random``."""
    from recbole_micro.raytune import require

    _, tune = require()

    if algo == "exhaustive":
        return {name: tune.grid_search(list(values)) for name, values in spec["choice"].items()}
    space = {}
    for kind, params in spec.items():
        for name, v in params.items():
            if kind == "choice":
                space[name] = tune.choice(list(v))
            elif kind == "uniform":
                space[name] = tune.uniform(v[0], v[1])
            elif kind == "quniform":
                space[name] = tune.quniform(v[0], v[1], v[2])
            else:  # hyperopt's loguniform takes log bounds, Ray's the values themselves
                space[name] = tune.loguniform(math.exp(v[0]), math.exp(v[1]))
    return space
