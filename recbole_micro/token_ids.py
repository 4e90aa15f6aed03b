"""Which user and item token has which internal id, recorded in checkpoints and restored at load.

RecBole numbers tokens in the order they first appear in the atomic files, so the same interactions
exported in another row order give every token another id, and a model's id-indexed parameters
(embeddings, feature rows, cached scores) would silently belong to other users and items. A checkpoint
therefore records ``data_identity``: the token of every id and a digest of the training interactions.

* ``saved_ids(identity)``: while a dataset is built inside it, RecBole's token → id remap assigns the
  recorded ids whenever the tokens are the same set in another order. The data then matches the
  checkpoint for every model, whatever its parameters (``load_data_and_model`` and ``recommend`` use it).
* ``check_identity``: one clear ``CheckpointError`` when tokens or training interactions differ (a
  different set of users or items, or, for a trainer whose data is already built — ``--resume``,
  ``evaluate`` — another order, which a resumed run could not reproduce anyway).
"""

import hashlib
from contextlib import contextmanager

import numpy as np
import torch
from recbole.data.dataset import Dataset
from recbole.utils import FeatureType

from recbole_micro.errors import CheckpointError


def _column(frame, field):
    values = frame[field]
    return values.cpu().numpy() if torch.is_tensor(values) else np.asarray(values)


def data_identity(dataset):
    """``{"user_field", "item_field", "user_tokens", "item_tokens", "train_pairs", "train_digest"}`` of a
    training dataset: the token of every internal id (``[PAD]`` first) and a SHA-256 of its sorted
    (user id, item id) pairs."""
    uid, iid = dataset.uid_field, dataset.iid_field
    users, items = _column(dataset.inter_feat, uid).astype(np.int64), _column(dataset.inter_feat, iid).astype(np.int64)
    order = np.lexsort((items, users))
    pairs = np.ascontiguousarray(np.stack([users[order], items[order]]))
    return {
        "user_field": uid,
        "item_field": iid,
        "user_tokens": [str(t) for t in dataset.field2id_token[uid]],
        "item_tokens": [str(t) for t in dataset.field2id_token[iid]],
        "train_pairs": int(len(users)),
        "train_digest": hashlib.sha256(pairs.tobytes()).hexdigest(),
    }


def _reorder_as_saved(dataset, remap_list, identity):
    """After RecBole's remap of one token group: if it is the user or item group and its tokens are the
    recorded ones in another order, renumber the group's columns to the recorded ids."""
    fields = {field for _, field, _ in remap_list}
    for kind, field in (("user", dataset.uid_field), ("item", dataset.iid_field)):
        saved = identity.get(f"{kind}_tokens")
        if field is None or field not in fields or not saved:
            continue
        current = dataset.field2id_token[field]
        if len(current) != len(saved) or [str(t) for t in current] == saved:
            continue
        position = {t: i for i, t in enumerate(saved)}
        if any(str(t) not in position for t in current):
            continue  # another token set: check_identity refuses it
        new_id = np.fromiter((position[str(t)] for t in current), dtype=np.int64, count=len(current))
        id2token = np.array(saved)
        token2id = {t: i for i, t in enumerate(saved)}
        for feat, name, ftype in remap_list:
            if ftype == FeatureType.TOKEN:
                feat[name] = new_id[np.asarray(feat[name].values, dtype=np.int64)]
            elif ftype == FeatureType.TOKEN_SEQ:
                feat[name] = [new_id[np.asarray(v, dtype=np.int64)] for v in feat[name].values]
            if dataset.field2id_token.get(name) is current:
                dataset.field2id_token[name] = id2token
                dataset.field2token_id[name] = token2id


@contextmanager
def saved_ids(identity):
    """Datasets built inside this block number users and items as ``identity`` recorded (when the token
    sets are equal). RecBole's ``Dataset._remap`` is wrapped for the duration of the block only."""
    if not identity:
        yield
        return
    original = Dataset._remap

    def remap(self, remap_list):
        original(self, remap_list)
        _reorder_as_saved(self, remap_list, identity)

    Dataset._remap = remap
    try:
        yield
    finally:
        Dataset._remap = original


def _examples(tokens):
    tokens = sorted(tokens)
    return f"{tokens[:3]}{' ...' if len(tokens) > 3 else ''}"


def check_identity(saved, current, path, folder, reorder_hint=False):
    """Refuse a checkpoint whose tokens or training interactions differ from the data in ``folder``.

    ``reorder_hint``: the data was built without ``saved_ids`` (a trainer's own data), so tokens in
    another order are refused too, with the way out."""
    if not saved:
        raise CheckpointError(f"checkpoint {path} records no token ids; it was not written by this plugin's "
                              f"current version: retrain")
    for kind in ("user", "item"):
        mine, theirs = saved[f"{kind}_tokens"], current[f"{kind}_tokens"]
        if mine == theirs:
            continue
        new, gone = set(theirs) - set(mine), set(mine) - set(theirs)
        if not new and not gone:
            how = ("rebuild it with the files it was trained on (recommend and load_data_and_model renumber "
                   "by token automatically)" if reorder_hint else "retrain")
            raise CheckpointError(
                f"checkpoint {path}: the {kind} tokens of the data in {folder} have other internal ids than when "
                f"it was written (same {len(mine) - 1} {kind}s, rows in another order); {how}"
            )
        raise CheckpointError(
            f"checkpoint {path} does not fit the data in {folder}: its {len(mine) - 1} {kind} tokens differ from "
            f"the data's {len(theirs) - 1} ({len(new)} in the data only, e.g. {_examples(new)}; {len(gone)} in the "
            f"checkpoint only, e.g. {_examples(gone)}); the data changed since training: use the data it was "
            f"trained on (--data_path) or retrain"
        )
    if saved["train_digest"] != current["train_digest"]:
        why = (" (as many pairs: a random split drew other interactions, e.g. because the rows of an .inter "
               "file were reordered)" if saved["train_pairs"] == current["train_pairs"] else "")
        raise CheckpointError(
            f"checkpoint {path}: the training interactions rebuilt from {folder} ({current['train_pairs']} pairs) "
            f"are not those it was trained on ({saved['train_pairs']} pairs){why}; use the same data files and "
            f"split settings, or retrain"
        )
