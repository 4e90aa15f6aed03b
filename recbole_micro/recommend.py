"""Top-k recommendations from a saved model, by user token.

Built on RecBole's ``full_sort_scores`` (scores of all items; ``[PAD]`` and the user's history masked to
−inf; equal scores in the order ``tie_break`` says, ``ties.top_k``) and the plugin's ``load_data_and_model``
(config, data and weights rebuilt from the checkpoint).
The history that is excluded is the training interactions (``exclude="train"``, the default: the
validation loader's history) or training + validation (``exclude="train+valid"``: the test loader's).
"""

import numpy as np
import torch
from recbole.utils.case_study import full_sort_scores

from recbole_micro.errors import CheckpointError, ConfigError, RecboleMicroError
from recbole_micro.ties import tie_break_mode, tie_order, top_k

EXCLUDE = ("train", "train+valid")


class UnknownUserError(RecboleMicroError):
    """A requested user token is not in the dataset the model was trained on."""


def load_for_recommendation(checkpoint, data_path=None):
    """``load_data_and_model`` with its failures turned into one-line ``CheckpointError``s."""
    from recbole_micro.quick_start import load_data_and_model

    try:
        return load_data_and_model(checkpoint, data_path=data_path)
    except RecboleMicroError:
        raise
    except RuntimeError as exc:  # load_state_dict: the data or model settings changed since the save
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {checkpoint} does not fit the data it names ({first}); the dataset changed since "
            f"training: restore it or retrain"
        ) from None
    except (ValueError, OSError) as exc:  # RecBole's "File ... not exist" when the data moved
        raise CheckpointError(
            f"checkpoint {checkpoint}: the dataset it was trained on could not be loaded ({exc}); "
            f"put the atomic files back at the data_path recorded in the checkpoint, pass --data_path, or retrain"
        ) from None


def resolve_users(dataset, users):
    """Internal ids of the user tokens ``users`` (order kept, duplicates dropped); one clear error
    listing the tokens the dataset does not know."""
    users = list(dict.fromkeys(str(u).strip() for u in users if str(u).strip()))
    if not users:
        raise ConfigError("no user tokens given; pass --users U1,U2 (tokens of the user_id column)")
    known = dataset.field2token_id[dataset.uid_field]
    unknown = [u for u in users if u not in known or u == "[PAD]"]
    if unknown:
        examples = [str(t) for t in list(known)[1:4]]  # plain 'u0', not np.str_('u0')
        raise UnknownUserError(
            f"user tokens {unknown[:10]}{' ...' if len(unknown) > 10 else ''} ({len(unknown)} of {len(users)}) "
            f"are not in dataset '{dataset.dataset_name}' ({dataset.user_num - 1} users, e.g. {examples}); "
            f"pass tokens from the '{dataset.uid_field}' column of its .inter files"
        )
    return users, np.array([known[u] for u in users], dtype=np.int64)


def recommend(checkpoint, users, topk=10, exclude="train", loaded=None, data_path=None, untrained_item_ids=None):
    r"""Top-``topk`` items for each user token in ``users`` from the model saved in ``checkpoint``.

    Returns ``[{"user": token, "items": [item tokens], "scores": [floats]}, ...]`` in the order given,
    best first, without the user's excluded history (fewer than ``topk`` items only when the user has
    interacted with nearly every item). ``loaded`` may pass the tuple of an earlier
    ``load_data_and_model`` call to skip rebuilding the data; ``data_path`` replaces the data folder the
    checkpoint recorded (the folder holding ``<dataset>/``). Items are named by the tokens the model was
    trained with, also when the data files list them in another order. ``untrained_item_ids`` (``keep`` |
    ``zero`` | ``content``; default: the checkpoint's) sets how a multimodal model scores items without a training interaction.
    """
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk <= 0:
        raise ConfigError(f"topk is {topk!r}; it must be an integer > 0")
    if exclude not in EXCLUDE:
        raise ConfigError(f"exclude is {exclude!r}; use one of {list(EXCLUDE)}")
    config, model, dataset, _train, valid_data, test_data = loaded or load_for_recommendation(checkpoint, data_path)
    if untrained_item_ids is not None:
        set_untrained_item_ids(model, untrained_item_ids, checkpoint)
    tokens, uids = resolve_users(dataset, users)
    loader = valid_data if exclude == "train" else test_data
    k = min(int(topk), dataset.item_num - 1)
    scores = full_sort_scores(uids, model, loader, device=config["device"])
    order = tie_order(dataset.item_num, config["seed"]) if tie_break_mode(config) == "random" else None
    scores, index = top_k(scores, k, order)
    scores, index = scores.cpu(), index.cpu()
    results = []
    for row, user in enumerate(tokens):
        keep = torch.isfinite(scores[row])
        items = dataset.id2token(dataset.iid_field, index[row][keep].numpy())
        results.append({"user": user, "items": [str(t) for t in items], "scores": scores[row][keep].tolist()})
    return results


def set_untrained_item_ids(model, rule, checkpoint):
    """Score the untrained items of ``model`` (a plugin multimodal model) by ``rule``; one line otherwise."""
    from recbole_micro.model.validation import UNTRAINED_ITEM_IDS

    if rule not in UNTRAINED_ITEM_IDS:
        raise ConfigError(f"untrained_item_ids is {rule!r}; use one of {list(UNTRAINED_ITEM_IDS)}")
    if not hasattr(model, "untrained_ids_blanked"):
        raise ConfigError(f"checkpoint {checkpoint}: model {type(model).__name__} scores items by their ID embeddings "
                          f"only; untrained_item_ids applies to the plugin's multimodal models (MICRO, LATTICE, VBPR, "
                          f"FREEDOM, BM3, LGMRec)")
    model.check_untrained_rule(rule)
    model.untrained_item_ids = rule
    model.clear_eval_cache()


def shortfall(results, topk):
    """One line when some users got fewer than ``topk`` items (the candidates left after their excluded
    history are fewer), '' otherwise."""
    short = [r for r in results if len(r["items"]) < topk]
    if not short:
        return ""
    fewest = min(short, key=lambda r: len(r["items"]))
    return (f"{len(short)} of {len(results)} users got fewer than topk={topk} items (fewest: user "
            f"'{fewest['user']}', {len(fewest['items'])} items): only items outside a user's excluded history are "
            f"candidates")


def format_recommendations(results):
    """Tab-separated lines ``user  rank  item  score`` with a header."""
    lines = ["user\trank\titem\tscore"]
    for entry in results:
        for rank, (item, score) in enumerate(zip(entry["items"], entry["scores"]), start=1):
            lines.append(f"{entry['user']}\t{rank}\t{item}\t{score:.6f}")
    return "\n".join(lines)
