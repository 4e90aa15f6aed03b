"""Find a dataset's atomic files, building the embedded default on first use.

``ensure_dataset`` runs when a ``Config`` is made, so a missing dataset fails fast with one message
that says how to get it, before any model is built.
"""

import os

from recbole_micro.errors import DatasetNotFoundError

# Public multimodal datasets users download, and the converter command for each layout.
KNOWN_SOURCES = {
    "baby": "python -m recbole_micro.data lattice ../shared/data/baby --name baby",
    "sports": "python -m recbole_micro.data lattice <LATTICE data>/sports --name sports",
    "clothing": "python -m recbole_micro.data lattice <LATTICE data>/clothing --name clothing",
}


def has_atoms(folder, name):
    """True when ``folder`` holds interaction atoms of dataset ``name``."""
    if not os.path.isdir(folder):
        return False
    return any(f.startswith(f"{name}.") and f.endswith(".inter") for f in os.listdir(folder))


def ensure_dataset(name, data_path):
    """Return the dataset folder ``<data_path>/<name>``; build the default one if it is missing."""
    from recbole_micro.data.default import DEFAULT_DATASET, build_default_dataset

    folder = os.path.join(data_path, name)
    if has_atoms(folder, name):
        return folder
    if name == DEFAULT_DATASET:
        return build_default_dataset(out=data_path)
    how = KNOWN_SOURCES.get(
        name.lower(),
        f"python -m recbole_micro.data lattice <folder with 5-core/*.json and <modality>_feat.npy> --name {name}"
        f"  (or: python -m recbole_micro.data mmrec <folder with {name}.inter and *_feat.npy> --name {name})",
    )
    raise DatasetNotFoundError(
        f"dataset '{name}' has no atomic files in {folder}/; convert it first: {how}"
        + (" (Amazon Baby: see ../shared/data/README.md)" if name.lower() == "baby" else "")
    )
