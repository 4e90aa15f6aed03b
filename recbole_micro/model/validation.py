"""Checks of the model hyper-parameters: one clear ``ConfigError`` naming the key, value and fix."""

import difflib

from recbole_micro.errors import ConfigError, FeatureError
from recbole_micro.model.backbones import CF_MODELS, UI_NORMS
from recbole_micro.model.graphs import NORM_TYPES
from recbole_micro.model.losses import CONTRASTIVE_MODES, CONTRASTIVE_PRECISIONS


def _require(ok, key, value, rule):
    if not ok:
        raise ConfigError(f"config key '{key}' is {value!r}; it must be {rule}")


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


def check_micro_config(config, dataset):
    """Validate the keys shared by MICRO and LATTICE against the dataset they will run on."""
    check_unknown_keys(config)
    if not getattr(dataset, "modality_features", None):
        raise FeatureError(
            f"model {config['model']} needs item features, but dataset '{config['dataset']}' has none: "
            f"list its feature atoms in `modalities` (e.g. `modalities: [image, text]`)"
        )
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
