"""Checks of a run's configuration and data: one clear ``ConfigError`` naming the key, value and fix.

``check_run`` (every model, called once by ``quick_start.build`` before the split) covers the training
keys and the interaction splits; ``check_multimodal_config`` what every multimodal model reads (features,
``embedding_size``); ``check_micro_config`` the keys MICRO and LATTICE add.
"""

import difflib
import math
import os
from logging import getLogger

import numpy as np

from recbole_micro.errors import ConfigError, DatasetNotFoundError, FeatureError
from recbole_micro.evaluation import eval_candidates_mode
from recbole_micro.model.backbones import CF_MODELS, UI_NORMS
from recbole_micro.model.graphs import NORM_TYPES
from recbole_micro.model.losses import CONTRASTIVE_MODES, CONTRASTIVE_PRECISIONS
from recbole_micro.ties import tie_break_mode


#: How the multimodal models score items without a training interaction (multimodal_base.py).
UNTRAINED_ITEM_IDS = ("keep", "zero", "content")


def _require(ok, key, value, rule):
    if not ok:
        raise ConfigError(f"config key '{key}' is {value!r}; it must be {rule}")


def _require_positive(config, key, integer):
    value = config[key]
    kind = "an integer" if integer else "a number"
    if isinstance(value, str):
        raise ConfigError(f"config key '{key}' is {value!r}, a string (quoted in a yaml file or on the command "
                          f"line?); it must be {kind} > 0: write it without quotes, e.g. {key}: {1e-3 if not integer else 2048}")
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    _require(ok and math.isfinite(value) and value > 0, key, value, f"{kind} > 0")


def check_run(config, dataset):
    """Run-level checks for every model (BPR and LightGCN as much as MICRO), before RecBole splits the
    data: ``learning_rate``, ``train_batch_size``, ``eval_batch_size`` and ``epochs`` > 0; ``eval_candidates``
    and ``tie_break`` known; no empty train, valid or test split (``ConfigError`` / ``DatasetNotFoundError``);
    duplicate (user, item) rows and pairs shared by the training and an evaluation split are logged once, with
    counts."""
    eval_candidates_mode(config)
    tie_break_mode(config)
    _require_positive(config, "learning_rate", integer=False)
    for key in ("train_batch_size", "eval_batch_size", "epochs"):  # epochs 0 would test an untrained model
        _require_positive(config, key, integer=True)
    for split, rows in _splits(config, dataset).items():
        if rows is not None and rows.size == 0:
            raise DatasetNotFoundError(
                f"{_split_file(config, split)}: the {split} split has no interactions; every split needs at "
                f"least one (re-run the converter, or give the file rows)"
            )
    _warn_duplicates(config, dataset)


def _split_file(config, split):
    return os.path.join(config["data_path"], f"{config['dataset']}.{split}.inter")


def _splits(config, dataset):
    """``{split: row indices}`` for the given split files (``benchmark_filename``); for a ratio split,
    checks the ratios themselves (a zero ratio or a missing split gives an empty split) and returns ``{}``."""
    names = config["benchmark_filename"]
    if names:
        bounds = np.cumsum([0] + list(dataset.file_size_list))
        return {name: np.arange(bounds[k], bounds[k + 1]) for k, name in enumerate(names)}
    split = (config["eval_args"] or {}).get("split") or {}
    if "RS" in split:
        ratios = split["RS"]
        ok = isinstance(ratios, (list, tuple)) and len(ratios) == 3 and all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in ratios)
        _require(ok, "eval_args.split.RS", ratios, "three ratios > 0 for [train, valid, test], e.g. [0.8, 0.1, 0.1] "
                 "(a zero or missing ratio leaves a split empty)")
    elif "LS" in split:
        _require(split["LS"] == "valid_and_test", "eval_args.split.LS", split["LS"],
                 "'valid_and_test' (the plugin evaluates on a valid and a test split)")
    return {}


def _ids(dataset, field):
    return np.asarray(dataset.inter_feat[field].values if hasattr(dataset.inter_feat[field], "values")
                      else dataset.inter_feat[field], dtype=np.int64)


_warned = set()


def _warn_once(message):
    """Log ``message`` once per process (a comparison builds several runs on the same data)."""
    if message not in _warned:
        _warned.add(message)
        getLogger().warning(message)


def _warn_duplicates(config, dataset):
    pairs = _ids(dataset, dataset.uid_field) * (dataset.item_num + 1) + _ids(dataset, dataset.iid_field)
    splits = _splits(config, dataset) or {None: np.arange(pairs.size)}
    for split, rows in splits.items():
        part = pairs[rows]
        unique, counts = np.unique(part, return_counts=True)
        extra = int(part.size - unique.size)
        if extra:
            where = _split_file(config, split) if split else config["data_path"]
            fix = "" if split else " (or set rm_dup_inter: first; the random split may put copies in train and test)"
            _warn_once(f"{where}: {extra} duplicate (user, item) rows ({int((counts > 1).sum())} pairs appear more "
                       f"than once); each copy counts as an interaction: keep one row per pair{fix}")
    names = list(splits)
    if len(names) == 3:
        train = np.unique(pairs[splits[names[0]]])
        for split in names[1:]:
            shared = np.isin(np.unique(pairs[splits[split]]), train)
            if shared.any():
                _warn_once(
                    f"{_split_file(config, split)}: {int(shared.sum())} (user, item) pairs are also in "
                    f"{config['dataset']}.{names[0]}.inter; full-sort evaluation masks training items, so these "
                    f"can never be ranked: remove them from the {split} split"
                )


def check_unknown_keys(config, cutoff=0.85):
    """Refuse a user-given key that nothing defines but that is one typo away from a known key
    (``knn_kk`` for ``knn_k``): RecBole accepts any key, so the typo would silently keep the default.
    Keys far from every known key are left alone (users may add their own)."""
    external = getattr(config, "external_config_dict", None) or {}
    internal = getattr(config, "internal_config_dict", None) or {}
    known = set(internal) | set(getattr(config, "final_config_dict", {}) or {}) - set(external)
    for key in external:
        if key in internal:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=cutoff)
        if close:
            raise ConfigError(
                f"config key '{key}' is not a known key of {config['model']} (did you mean '{close[0]}'?); "
                f"fix the spelling in your config file or --{close[0]}=... on the command line"
            )


def check_choice(config, key, choices):
    """``config[key]`` is one of ``choices`` (strings)."""
    _require(config[key] in choices, key, config[key], f"one of {list(choices)}")


def check_bool(config, key):
    """``config[key]`` is True or False (not 0/1 nor a string)."""
    _require(isinstance(config[key], bool), key, config[key], "True or False")


def check_int(config, key, low=0):
    """``config[key]`` is an integer >= ``low`` (not a bool)."""
    value = config[key]
    _require(isinstance(value, int) and not isinstance(value, bool) and value >= low, key, value, f"an integer >= {low}")


def check_number(config, key, low=0.0, high=None, low_open=False, high_open=False):
    """``config[key]`` is a number in [low, high] (a bound ``None`` is open-ended; ``*_open`` excludes it)."""
    value = config[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
    hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
    _require(ok, key, value, "a number " + " and ".join(p for p in (lo, hi) if p))


def check_multimodal_config(config, dataset):
    """Validate what every multimodal model reads: no misspelt key, item features present, an
    ``embedding_size`` > 0, ``reg_weight`` >= 0 where the model has one, ``untrained_item_ids``."""
    check_unknown_keys(config)
    if not getattr(dataset, "modality_features", None):
        raise FeatureError(
            f"model {config['model']} needs item features, but dataset '{config['dataset']}' has none: "
            f"list its feature atoms in `modalities` (e.g. `modalities: [image, text]`)"
        )
    _require(isinstance(config["embedding_size"], int) and not isinstance(config["embedding_size"], bool)
             and config["embedding_size"] > 0, "embedding_size", config["embedding_size"], "an integer > 0")
    if "reg_weight" in config:
        _require(isinstance(config["reg_weight"], (int, float)) and config["reg_weight"] >= 0, "reg_weight",
                 config["reg_weight"], "a number >= 0")
    check_choice(config, "untrained_item_ids", UNTRAINED_ITEM_IDS)


def check_micro_config(config, dataset):
    """Validate the keys shared by MICRO and LATTICE against the dataset they will run on."""
    check_multimodal_config(config, dataset)
    n_real_items = dataset.item_num - 1  # without [PAD]
    k = config["knn_k"]
    _require(isinstance(k, int) and 0 < k < n_real_items, "knn_k", k, f"an integer in [1, {n_real_items - 1}] (fewer than the {n_real_items} items)")
    lam = config["lambda_coeff"]
    _require(isinstance(lam, (int, float)) and 0.0 <= lam <= 1.0, "lambda_coeff", lam, "a number in [0, 1]")
    _require(config["cf_model"] in CF_MODELS, "cf_model", config["cf_model"], f"one of {list(CF_MODELS)}")
    _require(config["knn_norm"] in NORM_TYPES, "knn_norm", config["knn_norm"], f"one of {list(NORM_TYPES)}")
    _require(config["ui_norm"] in UI_NORMS, "ui_norm", config["ui_norm"], f"one of {list(UI_NORMS)}")
    for key in ("n_item_layers",):
        _require(isinstance(config[key], int) and config[key] >= 0, key, config[key], "an integer >= 0")
    for key in ("knn_chunk_size", "embedding_size"):
        _require(isinstance(config[key], int) and config[key] > 0, key, config[key], "an integer > 0")
    for key in ("reg_weight", "loss_ratio"):
        if key in config:
            _require(isinstance(config[key], (int, float)) and config[key] >= 0, key, config[key], "a number >= 0")
    if "contrastive_mode" in config:
        _require((config["contrastive_mode"] or "full") in CONTRASTIVE_MODES, "contrastive_mode",
                 config["contrastive_mode"], f"one of {list(CONTRASTIVE_MODES)}")
        samples = config["contrastive_samples"] or 1024
        _require(isinstance(samples, int) and samples >= 2, "contrastive_samples", samples, "an integer >= 2")
        precision = config["contrastive_precision"] or "fp32"
        _require(precision in CONTRASTIVE_PRECISIONS, "contrastive_precision", precision, f"one of {list(CONTRASTIVE_PRECISIONS)}")
    if "temperature" in config:
        _require(isinstance(config["temperature"], (int, float)) and config["temperature"] > 0, "temperature", config["temperature"], "a number > 0")
