"""RecBole dataset that gathers multimodal feature atoms into aligned item matrices.

Each modality ``m`` listed in the config key ``modalities`` is an atomic file ``<dataset>.<m>`` beside
the interactions, loaded by RecBole as an additional feature (``additional_feat_suffix``) with an
``item_id:token`` column and one ``float_seq`` column. After RecBole has remapped the item tokens,
``dataset.modality_features[m]`` is a float32 tensor ``(item_num, d_m)`` whose row ``i`` belongs to the
item with internal id ``i``. Row 0 is RecBole's ``[PAD]`` item; it is filled like a missing item and
never enters a graph (see ``recbole_micro.model.graphs.pad_graph``).

Rules (all logged with counts):

* feature rows of items absent from the interactions are dropped before the remap, so every model
  (MICRO or an ID-only baseline) sees the same item set;
* items without a feature row get the mean of the available rows (the reference fills items without
  an image with the mean vector), or an error when ``missing_feature: error``.
"""

import os
from logging import getLogger

import numpy as np
import torch
from recbole.data.dataset import Dataset
from recbole.utils import FeatureType

from recbole_micro.errors import FeatureError

MISSING_RULES = ("mean", "error")


def feature_atom_path(config, modality):
    """Path of the atomic file holding modality ``modality``."""
    return os.path.join(config["data_path"], f"{config['dataset']}.{modality}")


class MultimodalDataset(Dataset):
    r"""A RecBole ``Dataset`` plus ``modality_features``: ``{modality: FloatTensor(item_num, d)}``."""

    def __init__(self, config):
        self.modalities = list(config["modalities"] or [])
        if not self.modalities:
            raise FeatureError(
                f"dataset '{config['dataset']}': config key 'modalities' is empty; list the feature "
                f"atoms to use, e.g. `modalities: [image, text]` in {config['dataset']}.yaml"
            )
        self.missing_rule = config["missing_feature"] or "mean"
        if self.missing_rule not in MISSING_RULES:
            raise FeatureError(
                f"config key 'missing_feature' is {self.missing_rule!r}; use one of {MISSING_RULES}"
            )
        for modality in self.modalities:
            path = feature_atom_path(config, modality)
            if not os.path.isfile(path):
                raise FeatureError(
                    f"feature atom for modality '{modality}' not found: {path}; write it as "
                    f"`item_id:token<TAB>{modality}_feat:float_seq` or remove '{modality}' from 'modalities'"
                )
        super().__init__(config)

    # ---------------------------------------------------------------- loading
    def _load_data(self, token, dataset_path):
        super()._load_data(token, dataset_path)
        known = self._interaction_item_tokens()
        for modality in self.modalities:
            self._check_feature_frame(modality, known)

    def _interaction_item_tokens(self):
        frames = [self.inter_feat] if self.inter_feat is not None else []
        return set().union(*(set(frame[self.iid_field].values) for frame in frames))

    def _feature_field(self, modality):
        frame = getattr(self, f"{modality}_feat", None)
        path = feature_atom_path(self.config, modality)
        if frame is None or self.iid_field not in frame:
            raise FeatureError(
                f"{path}: no '{self.iid_field}' column was loaded; the header must be "
                f"`{self.iid_field}:token<TAB>{modality}_feat:float_seq` (check load_col)"
            )
        fields = [f for f in frame.columns if self.field2type.get(f) == FeatureType.FLOAT_SEQ]
        if len(fields) != 1:
            raise FeatureError(
                f"{path}: expected exactly one float_seq column, found {fields or 'none'}; "
                f"declare the feature as `{modality}_feat:float_seq`"
            )
        return frame, fields[0], path

    def _check_feature_frame(self, modality, known_items):
        """Validate one feature atom (before the remap) and drop rows of unknown items."""
        frame, field, path = self._feature_field(modality)
        logger = getLogger()
        lengths = np.fromiter((len(v) for v in frame[field].values), dtype=np.int64, count=len(frame))
        if len(frame) == 0:
            raise FeatureError(f"{path}: the feature atom has no rows")
        if lengths.min() != lengths.max():
            bad = int(np.argmax(lengths != np.bincount(lengths).argmax()))
            raise FeatureError(
                f"{path}: field '{field}' has rows of different lengths ({lengths.min()}..{lengths.max()}); "
                f"item '{frame[self.iid_field].iloc[bad]}' has {lengths[bad]} values; every row needs the same dimension"
            )
        matrix = np.stack(frame[field].values).astype(np.float32)
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            tokens = frame[self.iid_field].values[~finite][:5].tolist()
            raise FeatureError(
                f"{path}: field '{field}' has NaN or Inf values in {int((~finite).sum())} rows "
                f"(items {tokens}); fix or drop these rows"
            )
        zero = ~matrix.any(axis=1)
        if zero.any():
            tokens = frame[self.iid_field].values[zero][:5].tolist()
            raise FeatureError(
                f"{path}: field '{field}' has {int(zero.sum())} all-zero rows (items {tokens}); cosine "
                f"similarity is undefined for them: drop the rows (the missing-feature rule then applies)"
            )
        tokens = frame[self.iid_field].values
        dup = frame[self.iid_field].duplicated(keep=False).values
        if dup.any():
            first = tokens[dup][0]
            rows = matrix[tokens == first]
            if not (rows == rows[0]).all():
                raise FeatureError(
                    f"{path}: item '{first}' has {len(rows)} rows with different features "
                    f"({int(dup.sum())} duplicated rows in all); keep one row per item"
                )
            keep = ~frame[self.iid_field].duplicated(keep="first").values
            logger.warning(f"{path}: dropped {int((~keep).sum())} identical duplicate rows")
            frame, matrix = frame[keep], matrix[keep]
        in_inter = np.fromiter((t in known_items for t in frame[self.iid_field].values), bool, len(frame))
        if not in_inter.all():
            logger.warning(
                f"{path}: {int((~in_inter).sum())} feature rows belong to items that are not in the "
                f"interactions; they are ignored"
            )
            frame, matrix = frame[in_inter], matrix[in_inter]
        frame = frame.reset_index(drop=True)
        frame[field] = list(matrix)
        setattr(self, f"{modality}_feat", frame)

    # ------------------------------------------------------------- alignment
    def _data_processing(self):
        super()._data_processing()
        self.modality_features = {m: self._aligned_matrix(m) for m in self.modalities}
        # The matrices are all the models need: free the per-row frames before ``build`` copies them.
        for modality in self.modalities:
            setattr(self, f"{modality}_feat", None)
            self.feat_name_list.remove(f"{modality}_feat")

    def _aligned_matrix(self, modality):
        """(item_num × d) float32 tensor; row i = features of internal item id i (after the remap)."""
        frame, field, path = self._feature_field(modality)
        # RecBole remaps tokens only in inter_feat/item_feat: map the feature atom's tokens ourselves
        # (tokens unknown to the interactions were dropped in _check_feature_frame).
        ids = np.asarray(self.token2id(self.iid_field, frame[self.iid_field].values), dtype=np.int64)
        values = np.stack(frame[field].values).astype(np.float32)
        matrix = np.zeros((self.item_num, values.shape[1]), dtype=np.float32)
        present = np.zeros(self.item_num, dtype=bool)
        matrix[ids] = values
        present[ids] = True
        present[0] = True  # [PAD]
        missing = int((~present).sum())
        if missing:
            if self.missing_rule == "error":
                tokens = self.id2token(self.iid_field, np.flatnonzero(~present)[:5]).tolist()
                raise FeatureError(
                    f"{path}: {missing} items of the interactions have no feature row (e.g. {tokens}); "
                    f"add rows for them or set `missing_feature: mean`"
                )
            getLogger().warning(
                f"{path}: {missing} items of the interactions have no '{field}' row; "
                f"they get the mean feature vector (missing_feature: mean)"
            )
        matrix[~present] = values.mean(axis=0)
        matrix[0] = values.mean(axis=0)
        return torch.from_numpy(matrix)

    def __str__(self):
        dims = ", ".join(f"{m}: {tuple(x.shape)}" for m, x in self.modality_features.items())
        return super().__str__() + f"\nModality features: {dims}"
