r"""The run configuration of a tool: command-line overrides, the resolved ``Config``, and values from files.

RecBole's ``Config`` ``eval()``s every string of a ``config_dict``. The command line is the user's own
(RecBole types ``--key=value`` the same way), but values read from *files* — a ``.hyper`` ``choice``
list, a tuning export passed to ``--tuned`` — may come from anyone, so they go through
``typed_params``: each key must be one the model's resolved configuration knows, and its value must
match the type of that key's default — numbers, bools, lists of them, and, only for keys whose
default is a string, a plain name (letters, digits, ``_``) such as ``lightgcn``. RecBole's ``eval`` of a
plain name is a name look-up that fails (no code runs) and keeps the text, and a ``Config`` that
stops evaluating keeps it too, so the value reaches the model unchanged either way. Anything else
is refused with one line naming the file, the key and the value.
"""

import builtins
import difflib
import enum
import keyword
import math
import re
import sys

from recbole_micro.errors import ConfigError, RecboleMicroError
from recbole_micro.tools.files import plain

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_EVAL_TYPES = (str, int, float, list, tuple, dict, bool, enum.Enum)  # what RecBole's eval result may be


class NotFromFiles:
    """Stands for a default of a type files cannot set (devices, enums, ...); survives pickling to Ray workers."""

    def __init__(self, type_name):
        self.type_name = type_name


def parse_overrides(overrides):
    r"""``['--key=value', ...]`` (or a dict) → config dict, values typed as RecBole types command-line ones.

    Only for the user's own command line: values from files go through ``typed_params``.
    """
    if isinstance(overrides, dict):
        return dict(overrides)
    from recbole.config import Config as RecBoleConfig

    parsed = {}
    for arg in overrides or []:
        if not (arg.startswith("--") and "=" in arg):
            raise ConfigError(f"config override '{arg}' is not written --key=value")
        key, value = arg[2:].split("=", 1)
        parsed[key] = value
    return RecBoleConfig._convert_config_dict(None, parsed)


def check_model(model):
    """Fail early, in one line, on a model name that names no plugin or RecBole model."""
    from recbole_micro.utils import get_model

    try:
        get_model(model)
    except RecboleMicroError:
        raise
    except (ValueError, ImportError, AttributeError) as error:
        raise ConfigError(f"unknown model '{model}' ({error}); give a plugin model (MICRO, LATTICE) or one of "
                          f"RecBole's (BPR, LightGCN, NGCF, ...), spelt as RecBole spells it") from None


def resolve_config(model, dataset, config_files, fixed):
    """The run's Config (validates model and dataset names up front; gives the selection metric)."""
    from recbole_micro.config import Config

    check_model(model)
    sys.argv = sys.argv[:1]  # RecBole's Config parses sys.argv; overrides travel in the dict
    return Config(model=model, dataset=dataset, config_file_list=config_files, config_dict=dict(fixed))


def known_keys(config):
    r"""``{key: default}`` of a resolved Config: the keys files may set and the type each takes.

    Plain, picklable data (it travels to Ray workers); defaults of other types become a marker that no
    file value matches.
    """
    known = {}
    for key, value in config.final_config_dict.items():
        if value is None or isinstance(value, (bool, int, float, str, dict)):
            known[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
            known[key] = list(value)
        else:
            known[key] = NotFromFiles(type(value).__name__)
    return known


def _eval_visible_names():
    """Names RecBole's ``eval`` would turn into a value of an accepted type (``__debug__``, module constants)."""
    from recbole.config import configurator

    names = set()
    for namespace in (vars(builtins), vars(configurator)):
        names.update(name for name, obj in namespace.items() if isinstance(obj, _EVAL_TYPES))
    return names


def is_plain_name(text):
    """True for a string that reaches RecBole's Config unchanged whether or not it is ``eval()``ed."""
    return (isinstance(text, str) and bool(_NAME.match(text)) and not keyword.iskeyword(text)
            and not text.startswith("__") and text not in _eval_visible_names())


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _kind(default):
    if isinstance(default, (NotFromFiles, dict)):
        return None
    if isinstance(default, bool):
        return "true/false"
    if isinstance(default, (int, float)):
        return "a number"
    if isinstance(default, str):
        return "a plain name (letters, digits, _)"
    if isinstance(default, list):
        return "a list of numbers, true/false or plain names"
    return "a number, true/false or a list of them"  # default None: type unknown, no strings


def typed_value(key, value, default, where):
    r"""``value`` (from a file) as a config value of ``default``'s type; one-line ``ConfigError`` otherwise."""
    value = plain(value)
    kind = _kind(default)

    def refuse():
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        if kind is None:
            found = default.type_name if isinstance(default, NotFromFiles) else type(default).__name__
            return ConfigError(f"{where}: '{key}' cannot be set from a file (its default is a {found}); "
                               f"set it in a yaml config file or on the command line")
        return ConfigError(f"{where}: value {shown} for '{key}' is refused: '{key}' takes {kind}; values "
                           f"from files are never evaluated as code")

    if kind is None:
        raise refuse()
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise refuse()
    if isinstance(default, (int, float)):
        if not _is_number(value):
            raise refuse()
        if isinstance(default, int) and isinstance(value, float) and value.is_integer():
            return int(value)  # quniform draws floats: knn_k 10.0 → 10
        return value
    if isinstance(default, str):
        if is_plain_name(value):
            return value
        raise refuse()
    if isinstance(default, list):
        if isinstance(value, list) and all(isinstance(v, bool) or _is_number(v) or is_plain_name(v) for v in value):
            return value
        raise refuse()
    # default None: numbers, bools and lists of them
    if isinstance(value, bool) or _is_number(value):
        return value
    if isinstance(value, list) and all(isinstance(v, bool) or _is_number(v) for v in value):
        return value
    raise refuse()


def typed_params(params, known, where):
    r"""``{key: value}`` read from a file → typed config values, each key checked against ``known``
    (``known_keys`` of the model's resolved Config)."""
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: parameters must be a mapping of config keys to values, got "
                          f"{type(params).__name__}")
    typed = {}
    for key, value in params.items():
        check_key(key, known, where)
        typed[key] = typed_value(key, value, known[key], where)
    return typed


#: Keys a search space or tuning export may not set, and why: they define the run itself (what is trained,
#: on which data and split, under which seed), where it reads and writes, or whom it talks to.
RUN_KEYS = dict(
    {k: "it names what is trained and on which data" for k in ("model", "dataset", "data_path", "benchmark_filename")},
    seed="the training seed is the search's own (the same for every trial), or --seeds of the comparison",
    checkpoint_dir="where the run writes is named on the command line",
    **{k: "RecBole's pickle caches are never used" for k in ("save_dataset", "dataset_save_path", "save_dataloaders",
                                                             "dataloaders_save_path")},
    **{k: "it names a file the model reads" for k in ("pre_model_path", "pretrain_path", "mf_pretrain_path",
                                                      "mlp_pretrain_path", "warm_up")},
    **{k: "it sets up processes and network connections" for k in ("world_size", "nproc", "offset", "ip", "port",
                                                                   "local_rank")},
    **{k: "it sends the run to an outside service" for k in ("log_wandb", "wandb_project")},
)


def check_key(key, known, where):
    """One-line ``ConfigError`` for a key a file may not set (``RUN_KEYS``), or (with the close names) one the
    model's configuration does not have."""
    if isinstance(key, str) and key in RUN_KEYS:
        raise ConfigError(f"{where}: '{key}' cannot be set by a search space or tuning export ({RUN_KEYS[key]}); "
                          f"remove it from the file and set it on the command line (--{key}=...) or in a yaml "
                          f"config file")
    if isinstance(key, str) and key in known:
        return
    close = difflib.get_close_matches(str(key), [k for k in known if isinstance(k, str)], n=3)
    hint = f" (close: {', '.join(close)})" if close else ""
    raise ConfigError(f"{where}: unknown config key '{key}'{hint}; the model's configuration has no such key")
