r"""A tuning trial taken over as a comparison run.

The best trial of a search (``run_hyper.py``) was trained at the tuned point on the search's seed, under the
protocol the comparison uses: when ``run_compare.py --tuned`` runs that point on that seed with the same
resolved configuration, its run would be the trial again, epoch for epoch. It takes the trial over instead:
the trial's best checkpoint is scored on the test split once more, for the per-user values of the page's
paired tests, and the run is kept only when that score equals the test result the trial recorded; anything
else (another seed or value, a model that draws at random while scoring, a checkpoint no longer there) is
trained as usual. Only data is read: the export and the run record are JSON, the checkpoint is loaded
weights-only (``checkpoint.load_checkpoint``).
"""

import json
import os
import sys

from recbole_micro.checkpoint import check_run_checkpoint
from recbole_micro.errors import RecboleMicroError
from recbole_micro.tools.export import load_export
from recbole_micro.tools.files import plain

# what a run record's result must hold to stand for a run (quick_start.save_run_record writes them)
RESULT_KEYS = {"best_valid_score": (int, float), "best_valid_result": dict, "test_result": dict,
               "train_seconds": (int, float), "epochs_run": int}
# where the run's files lie and what it prints: they do not change what it trains
NOT_TRAINING = ("data_path", "checkpoint_dir", "state", "show_progress", "progress_every", "log_wandb")


def _trial(tuned):
    """The export's entry of the trial ``tuned`` names (its best), and the export's document."""
    doc = load_export(tuned["source"])
    for number, trial in enumerate(doc["trials"], 1):
        if trial.get("trial", number) == tuned["trial"]:
            return trial, doc
    return None, doc


def differences(recorded, resolved):
    """Keys whose resolved values differ between a run record's config and this run's (``NOT_TRAINING`` aside)."""
    return sorted(k for k in set(recorded) | set(resolved)
                  if k not in NOT_TRAINING and recorded.get(k, "<unset>") != resolved.get(k, "<unset>"))


def trial_result(tuned, config, per_user, rescore):
    r"""``(result, note)``: the result ``quick_start.run_recbole_micro`` would return for this run, taken from the
    trial ``tuned`` names (``compare.load_tuned``), or ``None`` with the reason it is not this run (``''`` when
    the trial ran with another seed: nothing to say). ``config``: this run's resolved Config; ``rescore(checkpoint,
    per_user)``: ``(test_result, per_user_values)`` of a checkpoint, evaluated as the run's final test is."""
    from recbole_micro.quick_start import plain_config, record_path

    trial, doc = _trial(tuned)
    if doc.get("seed") != config["seed"] or doc.get("dataset") != config["dataset"]:
        return None, ""
    if trial is None or trial.get("status") != "ok" or not trial.get("checkpoint"):
        return None, "the export names no checkpoint of it"
    try:
        checkpoint = check_run_checkpoint(trial["checkpoint"], config["checkpoint_dir"], tuned["source"])
    except RecboleMicroError:
        return None, f"its checkpoint {trial['checkpoint']} is not in this run's checkpoint_dir"
    record = record_path(checkpoint)
    if not (os.path.isfile(checkpoint) and os.path.isfile(record)):
        return None, f"its checkpoint {checkpoint} or run record {record} is gone"
    try:
        with open(record, encoding="utf-8") as f:
            saved = json.load(f)
        recorded, before = saved["config"], saved["result"]
        missing = [k for k in RESULT_KEYS if not isinstance(before.get(k), RESULT_KEYS[k])]
        changed = differences(recorded, plain_config(config))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return None, f"its run record {record} cannot be read ({type(error).__name__})"
    if missing:
        return None, f"its run record {record} holds no valid '{missing[0]}'"
    if changed:
        older = [k for k in changed if k not in recorded]  # keys the plugin gained after the trial ran
        shown = ", ".join((older or changed)[:4]) + (" ..." if len(older or changed) > 4 else "")
        return None, (f"its run record predates the keys {shown}" if older
                      else f"it ran with other values of {shown}")
    test_result, values = rescore(checkpoint, per_user)
    if plain(test_result) != before.get("test_result"):
        return None, (f"its checkpoint scores {plain(test_result)} on test now, the trial recorded "
                      f"{before.get('test_result')} (the model draws at random while scoring?)")
    epochs = int(trial.get("epochs_run") or before["epochs_run"])
    # training time as a run measures it (fit only): the record's, whose sitting is the whole trial unless it was
    # continued (then the export's trial time, data loading included: earlier sittings' fit time is not kept)
    one_sitting = not before.get("start_epoch")
    seconds = float(before["train_seconds"] if one_sitting else trial.get("seconds") or before["train_seconds"])
    result = dict(before, test_result=test_result, checkpoint=checkpoint, start_epoch=0, epochs_run=epochs,
                  train_seconds=seconds, best_epoch=trial.get("best_epoch"), record=record,
                  seconds_per_epoch=before.get("seconds_per_epoch") or seconds / max(1, epochs))
    if values is not None:
        result["per_user"] = values
    return result, ""


def announce(prefix, row, label, tuned, result, note, metric):
    """One line saying whether the trial was taken over, and why not when it ran on this seed."""
    if result is not None:
        test = result["test_result"].get(metric)
        print(f"{prefix} {row}{label}: trial {tuned['trial']} of {tuned['source']} is this run (same seed and "
              f"configuration): taken over, not trained again; its checkpoint scores test {metric} "
              f"{test if test is None else round(test, 4)} again, as the trial recorded", flush=True)
    elif note:
        print(f"{prefix} {row}{label}: trial {tuned['trial']} of {tuned['source']} is not taken over ({note}): "
              f"trained", file=sys.stderr, flush=True)
