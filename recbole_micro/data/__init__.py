"""Data path: source layouts → atomic files (``convert``, ``default``) → ``MultimodalDataset``."""

from recbole_micro.data.convert import ConversionError, convert_lattice, convert_mmrec
from recbole_micro.data.dataset import MultimodalDataset
from recbole_micro.data.default import DEFAULT_DATASET, build_default_dataset
from recbole_micro.data.locate import ensure_dataset

__all__ = [
    "ConversionError",
    "convert_lattice",
    "convert_mmrec",
    "MultimodalDataset",
    "DEFAULT_DATASET",
    "build_default_dataset",
    "ensure_dataset",
]
