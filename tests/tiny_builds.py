"""Tiny generated datasets and float64 copies of a model: what every model's loss-and-gradient tests start from."""

import contextlib

import pytest
import torch

from conftest import run_config, train_on_synthetic
from recbole_micro.quick_start import build

DIMS = {2: {"image": 6, "text": 5}, 3: {"image": 6, "text": 5, "audio": 4}}  # feature layouts by modality count
TINY = dict(n_users=30, n_items=18, n_clusters=3, per_user=(3, 6), seed=4)


def tiny_builds(tmp_path_factory, model, dims=DIMS, **config):
    """``{n_modalities: (config, train_data)}``: ``model`` built on one tiny generated dataset (30 users, 18 items)
    per feature layout of ``dims``, on the CPU, seed 11, 8-d embeddings, with the ``config`` keys on top."""
    def build_tiny(root):
        built_config, _, _, (train_data, _, _) = build(model, "syn", config_dict=run_config(
            root, device="cpu", use_gpu=False, seed=11, embedding_size=8, **config))
        return built_config, train_data

    return {n: train_on_synthetic(tmp_path_factory, f"{model.lower()}{n}", dict(TINY, dims=layout), build_tiny)[1]
            for n, layout in dims.items()}


@contextlib.contextmanager
def config_set(config, **keys):
    """``config`` (a resolved RecBole config) with ``keys`` set, restored on exit."""
    old = {k: config[k] for k in keys}
    try:
        for k, v in keys.items():
            config[k] = v
        yield config
    finally:
        for k, v in old.items():
            config[k] = v


def construction_error(model_class, built, **keys):
    """The one-line error a ``model_class`` built with ``keys`` set in the resolved config raises (keys restored)."""
    from recbole_micro.errors import ConfigError

    config, train_data = built
    with config_set(config, **keys), pytest.raises(ConfigError) as err:
        model_class(config, train_data._dataset)
    return str(err.value)


def in_float64(model_class, built, **keys):
    """``(config dict, model, train_data)``: a ``model_class`` built with ``keys`` set in the resolved config of
    ``built`` (restored after), seeded with 5 and cast to float64."""
    config, train_data = built
    with config_set(config, **keys):
        torch.manual_seed(5)
        model = model_class(config, train_data._dataset).double()
        return dict(config.final_config_dict), model, train_data


def assert_gradients_close(loss, reference, params, leaves, label):
    """The gradients of ``loss`` w.r.t. ``params`` equal those of the dense ``reference`` w.r.t. ``leaves`` (the
    same names; a parameter neither reaches counts as a zero gradient), to 1e-6 of the largest reference entry.
    Returns ``{name: largest |reference gradient|}`` (0 where the reference does not reach it)."""
    names = sorted(params)
    got = torch.autograd.grad(loss, [params[n] for n in names], retain_graph=True, allow_unused=True)
    want = torch.autograd.grad(reference, [leaves[n] for n in names], retain_graph=True, allow_unused=True)
    scales = {}
    for name, a, b in zip(names, got, want):
        a = torch.zeros_like(params[name]) if a is None else a
        b = torch.zeros_like(params[name]) if b is None else b
        scales[name] = b.abs().max().item()
        torch.testing.assert_close(a, b, atol=1e-6 * max(scales[name], 1e-6), rtol=1e-5,
                                   msg=lambda m, name=name: f"{label} / {name}: {m}")
    return scales
