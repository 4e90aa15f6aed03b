"""A model's ``other_parameter`` (RecBole's name for its state outside ``state_dict``) as checkpoint data.

RecBole's graph models keep tensors there (evaluation caches), but its memory-based baselines keep the
matrices they score with: ItemKNN and AsymKNN a similarity and a prediction matrix (scipy sparse, the latter
LIL), EASE the interaction matrix (scipy CSR) and its dense item-item weights (a ``numpy.matrix``),
SLIMElastic two CSR matrices. Pickled as they are, they need numpy's and scipy's classes to unpickle, and a
data-only checkpoint (``checkpoint.load_checkpoint``, ``weights_only``) refuses them. Here each becomes a small
dict of tensors, strings and integers (``to_data``), read back into the same kind of object, value for value
(``from_data``); ``problem`` checks what a loaded file holds.
"""

import numpy as np
import scipy.sparse as sp
import torch

from recbole_micro.errors import CheckpointError

NUMPY, SPARSE = "numpy array", "scipy sparse"  # the tag each encoded value carries under "kind"
_COMPRESSED = ("csr", "csc")  # kept as (data, indices, indptr); any other format goes through CSR


def _encode(value):
    if value is None or torch.is_tensor(value) or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return {"kind": NUMPY, "values": torch.from_numpy(np.ascontiguousarray(value)),
                "matrix": isinstance(value, np.matrix)}  # np.matrix multiplies and indexes as a matrix
    if sp.issparse(value):
        form = value.format
        stored = value if form in _COMPRESSED else value.tocsr()
        return {"kind": SPARSE, "format": form, "stored": stored.format, "shape": [int(n) for n in value.shape],
                "data": torch.from_numpy(np.ascontiguousarray(stored.data)),
                "indices": torch.from_numpy(np.ascontiguousarray(stored.indices)),
                "indptr": torch.from_numpy(np.ascontiguousarray(stored.indptr))}
    return NotImplemented


def to_data(model):
    """``model.other_parameter()`` with numpy arrays and scipy sparse matrices as tagged dicts of tensors;
    a ``CheckpointError`` naming the model and key for a value a data-only checkpoint cannot hold."""
    values = model.other_parameter()
    encoded = {}
    for key, value in (values or {}).items():
        encoded[key] = _encode(value)
        if encoded[key] is NotImplemented:
            raise CheckpointError(
                f"{type(model).__name__} keeps '{key}' ({type(value).__name__}) outside its parameters; a data-only "
                f"checkpoint holds tensors, numbers, numpy arrays and scipy sparse matrices there, not this: the model "
                f"cannot be saved by this plugin's trainer")
    return encoded


def _decode(value):
    if not isinstance(value, dict):
        return value
    if value["kind"] == NUMPY:
        array = value["values"].cpu().numpy()
        return np.asmatrix(array) if value.get("matrix") else array
    parts = (value["data"].cpu().numpy(), value["indices"].cpu().numpy(), value["indptr"].cpu().numpy())
    matrix = (sp.csr_matrix if value["stored"] == "csr" else sp.csc_matrix)(parts, shape=tuple(value["shape"]))
    return matrix.asformat(value["format"])


def from_data(values):
    """The inverse of ``to_data``: numpy arrays and scipy matrices back in their own kind and format."""
    return None if values is None else {key: _decode(value) for key, value in values.items()}


def problem(value):
    """Why a loaded ``other_parameter`` field is malformed ('' when ``from_data`` can read it)."""
    if value is None:
        return ""
    if not isinstance(value, dict):
        return "it must map names to tensors"
    for key, item in value.items():
        if not isinstance(key, str):
            return f"has the key {key!r}; keys must be names"
        if item is None or torch.is_tensor(item) or (isinstance(item, (int, float)) and not isinstance(item, bool)):
            continue
        if (isinstance(item, dict) and item.get("kind") == NUMPY and torch.is_tensor(item.get("values"))
                and isinstance(item.get("matrix", False), bool)):
            continue
        if isinstance(item, dict) and item.get("kind") == SPARSE and _sparse_ok(item):
            continue
        return f"has '{key}' = {repr(item)[:60]}; it must be a tensor, a number, None or an encoded matrix"
    return ""


def _sparse_ok(item):
    shape = item.get("shape")
    return (item.get("stored") in _COMPRESSED and isinstance(item.get("format"), str)
            and isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) and n >= 0 for n in shape)
            and all(torch.is_tensor(item.get(k)) and item[k].dim() == 1 for k in ("data", "indices", "indptr"))
            and len(item["indptr"]) == shape[0 if item["stored"] == "csr" else 1] + 1
            and len(item["indices"]) == len(item["data"]))
