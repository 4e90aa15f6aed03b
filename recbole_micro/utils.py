"""Find models, datasets and trainers by name, the plugin's first, then RecBole's.

The RecBole-GNN pattern: ``get_model("MICRO")`` imports ``recbole_micro.model.micro``; any other name
(``BPR``, ``LightGCN``, …) falls back to RecBole, so one entry point runs the plugin's models and
RecBole's baselines on the same data.
"""

import importlib
import os

from recbole.data import create_dataset as recbole_create_dataset
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

import recbole_micro.properties

PROPERTIES_DIR = os.path.dirname(os.path.abspath(recbole_micro.properties.__file__))


def get_model(model_name):
    r"""Model class named ``model_name``: ``recbole_micro.model.<lowercase name>.<name>`` or RecBole's."""
    module_path = f"recbole_micro.model.{model_name.lower()}"
    if importlib.util.find_spec(module_path) is not None:
        return getattr(importlib.import_module(module_path), model_name)
    return recbole_get_model(model_name)


def get_trainer(model_type, model_name):
    r"""``recbole_micro.trainer.<Model>Trainer`` if it exists, else RecBole's trainer for the model.

    RecBole's trainers are wrapped so their checkpoints load on torch ≥ 2.6 (see ``checkpoint.py``).
    """
    trainer_module = importlib.import_module("recbole_micro.trainer")
    if hasattr(trainer_module, f"{model_name}Trainer"):
        return getattr(trainer_module, f"{model_name}Trainer")
    return trainer_module.with_safe_checkpoints(recbole_get_trainer(model_type, model_name))


def create_dataset(config):
    r"""``<Model>Dataset`` from ``recbole_micro.data.dataset`` if it exists; ``MultimodalDataset`` when
    the config names ``modalities`` (so baselines see the same items as MICRO); else RecBole's."""
    dataset_module = importlib.import_module("recbole_micro.data.dataset")
    dataset_class = getattr(dataset_module, f"{config['model']}Dataset", None)
    if dataset_class is None and config["modalities"]:
        dataset_class = dataset_module.MultimodalDataset
    if dataset_class is None:
        return recbole_create_dataset(config)
    return dataset_class(config)
