r"""Item cold-start split: a fraction of the items keep NO training interaction.

The protocol of the LATTICE/MICRO cold-start experiments (CRIPAC-DIG/LATTICE ``data/cold_start.py``):

1. pool every (user, item) interaction of the source, whatever its original split;
2. sample ``int(fraction · n_items)`` of the n items that have interactions — the reference's draw:
   ``numpy.random.seed(seed); numpy.random.choice(n_items, n_cold, replace=False)`` over the items in
   ascending id order (for 0-based contiguous ids, index k is item k, exactly as the reference);
3. the first ``n_cold // 2`` drawn items are the TEST cold items, the others the VALID cold items;
   ALL interactions of a test (valid) cold item go to test (valid);
4. train keeps every interaction of the other (warm) items — including those the source had put in
   its valid or test split: the protocol evaluates cold items only, so warm interactions are training
   data (as in the reference, which re-splits the pooled user–item dict).

Evaluation then ranks each split over its own cold items (``eval_candidates: cold``, written to the
dataset's yaml; see ``recbole_micro.evaluation``): the valid cold items for validation, the test cold
items for test. Users keep their ids even when all their interactions are cold (they then have no
training interaction; RecBole still evaluates them).

Defaults: fraction 0.2 (10 % of the items in valid, 10 % in test), seed 123 (the reference's).
"""

import os

import numpy as np

from recbole_micro.data import convert
from recbole_micro.data.convert import SPLITS, ConversionError, write_dataset

__all__ = ["DEFAULT_FRACTION", "DEFAULT_SEED", "cold_start_split", "cold_start_dataset", "convert_cold_start"]

DEFAULT_FRACTION = 0.2
DEFAULT_SEED = 123

#: Extra line of the dataset yaml: rank each split over its cold items.
EVAL_LINE = ("eval_candidates: cold                     # rank each split over its cold items only "
             "(recbole_micro.evaluation)")


def _item_key(item):
    token = str(item)
    return (0, int(token), token) if token.isdigit() else (1, 0, token)


def cold_start_split(splits, fraction=DEFAULT_FRACTION, seed=DEFAULT_SEED):
    r"""Re-split ``{split: [(user, item), ...]}`` for item cold start (see the module doc).

    Returns ``(new_splits, cold)``: the new ``{split: [(user, item), ...]}`` (each pair once, in the
    order of first occurrence in train, valid, test) and ``cold = {"valid": [items], "test": [items]}``
    (ascending). Raises ``ConversionError`` when the fraction leaves no cold item in valid or test, or
    no warm item.
    """
    if not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ConversionError(f"cold-start fraction {fraction!r} must be a number in (0, 1), e.g. 0.2")
    pairs = list(dict.fromkeys(p for split in SPLITS for p in splits[split]))  # pooled, de-duplicated
    items = sorted({i for _, i in pairs}, key=_item_key)
    n_cold = int(fraction * len(items))
    if n_cold < 2 or n_cold >= len(items):
        raise ConversionError(
            f"cold-start fraction {fraction} of {len(items)} items gives {n_cold} cold items; at least 2 (one "
            f"for valid, one for test) and fewer than all items are needed: choose another fraction"
        )
    drawn = np.random.RandomState(seed).choice(len(items), n_cold, replace=False).tolist()
    test_items = {items[k] for k in drawn[: n_cold // 2]}
    valid_items = {items[k] for k in drawn[n_cold // 2 :]}
    out = {split: [] for split in SPLITS}
    for user, item in pairs:
        split = "test" if item in test_items else "valid" if item in valid_items else "train"
        out[split].append((user, item))
    cold = {"valid": sorted(valid_items, key=_item_key), "test": sorted(test_items, key=_item_key)}
    return out, cold


def _describe(splits, cold, fraction, seed):
    n_items = len({i for pairs in splits.values() for _, i in pairs})
    counts = " / ".join(f"{s} {len(splits[s])}" for s in SPLITS)
    return [
        f"Item cold start (recbole_micro.data.coldstart, fraction {fraction}, seed {seed}): "
        f"{len(cold['valid'])} valid + {len(cold['test'])} test cold items of {n_items} hold ALL their "
        f"interactions; train keeps every interaction of the other items ({counts}).",
    ]


def cold_start_dataset(out, name, splits, features, fraction=DEFAULT_FRACTION, seed=DEFAULT_SEED,
                       header_lines=(), overwrite=False, feature_tokens=None):
    r"""Re-split ``splits`` with :func:`cold_start_split` and write the dataset (``write_dataset``) with
    ``eval_candidates: cold`` in its yaml. Returns ``(folder, cold)``."""
    new, cold = cold_start_split(splits, fraction, seed)
    new = {s: convert.sort_pairs(pairs) for s, pairs in new.items()}
    header = list(header_lines) + _describe(new, cold, fraction, seed)
    yaml_text = convert.yaml_text(name, header, features, extra_lines=[EVAL_LINE])
    yaml_text = yaml_text.replace("# keep the source's split", "# the cold-start split described above")
    folder = write_dataset(out, name, new, features, yaml_text, overwrite=overwrite, feature_tokens=feature_tokens)
    return folder, cold


def _read_source(layout, src):
    """``(splits, path_of)`` of a LATTICE/MICRO or MMRec source folder, checked as the converters do."""
    if layout == "lattice":
        expected = [f"5-core/{f}" for f in convert.LATTICE_FILES.values()]
        expected += [f"{m}_feat.npy" for m in convert.MODALITIES]
        convert.require_files(src, expected, "LATTICE/MICRO")
        path_of = lambda split: os.path.join(src, "5-core", convert.LATTICE_FILES[split])  # noqa: E731
        return {split: convert.read_lattice_split(path_of(split)) for split in SPLITS}, path_of
    if layout == "mmrec":
        found = convert.find_inter(src)
        inter_name = found[0] if found else "*.inter"
        convert.require_files(src, [inter_name] + [f"{m}_feat.npy" for m in convert.MODALITIES], "MMRec")
        path = os.path.join(src, inter_name)
        return convert.read_mmrec_inter(path), lambda split: path
    raise ConversionError(f"layout {layout!r} is not one of 'lattice', 'mmrec'")


def convert_cold_start(layout, src, name, out="atomic_data", overwrite=False, fraction=DEFAULT_FRACTION,
                       seed=DEFAULT_SEED):
    r"""Convert a LATTICE/MICRO (``layout='lattice'``) or MMRec (``'mmrec'``) folder like
    ``convert_lattice``/``convert_mmrec``, but with the item cold-start split of this module instead of
    the source's split. Returns the output folder ``<out>/<name>``.

    CLI: ``python -m recbole_micro.data lattice SRC --name baby-cold --cold-start 0.2 [--seed 123]``.
    """
    src = os.fspath(src)
    convert.check_dataset_name(name)
    splits, path_of = _read_source(layout, src)
    convert.check_splits(splits, path_of)
    max_item = max(i for pairs in splits.values() for _, i in pairs)
    features = convert.load_features(src, max_item)
    dims = ", ".join(f"{m} {a.shape[0]}x{a.shape[1]}" for m, a in features.items())
    header = [
        f"Generated by recbole_micro.data ({layout} layout, --cold-start {fraction} --seed {seed}) from "
        f"{os.path.abspath(src)}; re-run the converter instead of editing. Features: {dims}.",
    ]
    folder, _ = cold_start_dataset(os.fspath(out), name, splits, features, fraction, seed, header, overwrite)
    return folder
