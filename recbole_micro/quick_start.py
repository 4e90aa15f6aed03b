"""Quick start: ``run_recbole_micro`` (train + test one model), ``objective_function`` (for RecBole's
``HyperTuning``) and ``load_data_and_model`` (rebuild data and model from a checkpoint).

RecBole's own versions look models up inside RecBole only; these build the same pipeline
(Config → create_dataset → data_preparation → model → trainer) with the plugin's look-ups, so plugin
models and RecBole's baselines run through one path on the same data and split.
"""

import contextlib
import json
import logging
import os
import time
from logging import getLogger

import torch
from recbole.utils import get_environment, init_logger, init_seed, set_color

from recbole_micro.checkpoint import (
    check_checkpoint_dir, check_finite_weights, claim_checkpoint, load_checkpoint, load_state,
)
from recbole_micro.config import Config, config_from_data
from recbole_micro.data.caches import check_cache_keys, data_preparation
from recbole_micro.data.default import DEFAULT_DATASET
from recbole_micro.data.locate import has_atoms
from recbole_micro.data.sampler import train_dataloader
from recbole_micro.errors import CheckpointError
from recbole_micro.evaluation import apply_test_mask
from recbole_micro.model.validation import check_run
from recbole_micro.token_ids import check_identity, data_identity, saved_ids
from recbole_micro.utils import create_dataset, get_model, get_trainer


def prepare_data(config, data):
    r"""RecBole's ``data_preparation`` (without its pickled dataloader cache: ``data.caches``) with the
    plugin's protocol: the training batches of ``train_sampler`` (``user``: the reference's) and the test
    mask of ``test_mask_valid``."""
    train_data, valid_data, test_data = data_preparation(config, data)
    train_data = train_dataloader(config, train_data)  # train_sampler: user = the reference's batches
    apply_test_mask(config, test_data, train_data._dataset)  # test_mask_valid: False = the reference's test ranking
    return train_data, valid_data, test_data


def build(model=None, dataset=None, config_file_list=None, config_dict=None, quiet=False):
    r"""Config, dataloaders, model and trainer of one run (everything but training)."""
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    check_checkpoint_dir(config["checkpoint_dir"])  # before any data is loaded or epoch trained
    init_seed(config["seed"], config["reproducibility"])
    if quiet:
        logger = getLogger()
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
    init_logger(config)
    if quiet:
        logging.basicConfig(level=logging.ERROR)
    logger = getLogger()
    logger.info(config)
    data = create_dataset(config)
    logger.info(data)
    check_run(config, data)  # training keys and splits of every model, before RecBole splits the data
    train_data, valid_data, test_data = prepare_data(config, data)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_class = get_model(config["model"])
    net = model_class(config, train_data._dataset).to(config["device"])
    logger.info(net)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    trainer.record_data(train_data._dataset)  # token ids, stored in and checked against checkpoints
    return config, net, trainer, (train_data, valid_data, test_data)


def _result(config, trainer, best_valid_score, best_valid_result, test_result, seconds):
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": dict(best_valid_result or {}),
        "test_result": dict(test_result or {}),
        "checkpoint": trainer.saved_model_file,
        "train_seconds": seconds,
    }


def _best_epoch_tracker(trainer, callback_fn=None):
    """A ``fit`` callback recording the epoch of the best validation (RecBole resets ``cur_step`` to 0
    exactly when a validation improves), then calling ``callback_fn``."""
    seen = {"best_epoch": None}

    def track(epoch_idx, valid_score):
        if trainer.cur_step == 0:
            seen["best_epoch"] = epoch_idx
        if callback_fn:
            callback_fn(epoch_idx, valid_score)

    return track, seen


def record_path(checkpoint):
    """The run record written beside a best checkpoint: ``<checkpoint stem>.json``."""
    return os.path.splitext(str(checkpoint))[0] + ".json"


def plain_config(config):
    """The resolved config as the run record stores it: JSON data, other values as their ``str``."""
    resolved = {k: v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else str(v)
                for k, v in config.final_config_dict.items()}
    return json.loads(json.dumps(resolved, default=str))


def save_run_record(config, result):
    """Write the full resolved config and the result beside the checkpoint (``<checkpoint>.json``)."""
    path = record_path(result["checkpoint"])
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"result": result, "config": plain_config(config)}, f, indent=1, default=str)
    return path


def run_recbole_micro(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True,
                      resume=None, callback_fn=None, checkpoint_file=None, per_user=None):
    r"""Train ``model`` on ``dataset``, select on validation, evaluate the best checkpoint on test.

    Returns a dict with ``best_valid_score``, ``best_valid_result``, ``test_result``, ``checkpoint``,
    ``train_seconds`` and ``epochs_run`` (epochs trained by this call; ``start_epoch`` is where it began);
    the resolved config and the result are saved as ``<checkpoint>.json``. ``resume`` continues an
    interrupted run from its checkpoint; ``checkpoint_file`` names the best checkpoint up front (its
    resume point is ``<name>-last.pth``); ``per_user`` (metric keys such as ``["recall@20"]``) adds
    ``result["per_user"]``: each test user's token and values (``per_user.PerUserValues``).
    """
    config, net, trainer, data = _build_run(model, dataset, config_file_list, config_dict, checkpoint_file, resume,
                                            saved=saved)
    result = _fit_and_test(config, net, trainer, data, saved=saved, resume=resume, callback_fn=callback_fn,
                           show_progress=config["show_progress"], per_user=per_user)
    logger = getLogger()
    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {result['best_valid_result']}")
    logger.info(set_color("test result", "yellow") + f": {result['test_result']}")
    if saved and config["local_rank"] == 0:  # one record per run, also with several processes
        result["record"] = save_run_record(config, {k: v for k, v in result.items() if k != "per_user"})
    if not config["single_spec"]:
        torch.distributed.destroy_process_group()
    return result


def test_checkpoint(model, dataset, config_file_list, config_dict, checkpoint, per_user=None):
    r"""``(test_result, per_user_values)`` of a saved run's best checkpoint, scored on test as the final test of
    ``run_recbole_micro`` scores it: the run rebuilt from the same config, nothing trained (``per_user``: metric
    keys as there; values ``None`` without)."""
    from recbole_micro.per_user import PerUserValues

    config, _, trainer, (_, _, test_data) = build(model, dataset, config_file_list, config_dict)
    capture = PerUserValues(trainer, per_user) if per_user else contextlib.nullcontext()
    with capture:
        test_result = trainer.evaluate(test_data, model_file=str(checkpoint), show_progress=config["show_progress"])
    return test_result, capture.values(test_data._dataset) if per_user else None


def objective_function(config_dict=None, config_file_list=None, saved=True, checkpoint_file=None, resume=None,
                       callback_fn=None):
    r"""Objective for RecBole's ``HyperTuning``: one quiet training run, selected on validation.
    Without ``checkpoint_file`` no resume point is written (a trial that dies is re-run); with it the
    best checkpoint has that name, ``<name>-last.pth`` is written every ``eval_step`` epochs, and
    ``resume`` continues an interrupted trial from one of them. ``callback_fn(epoch_idx, valid_score)``:
    called after each validation (RecBole's trainer hook), e.g. to show progress."""
    if checkpoint_file is None:
        config_dict = {"last_checkpoint_step": 0, **(config_dict or {})}
    config, net, trainer, data = _build_run(None, None, config_file_list, config_dict, checkpoint_file, resume,
                                            quiet=True, saved=saved)
    result = _fit_and_test(config, net, trainer, data, saved=saved, resume=resume, callback_fn=callback_fn,
                           verbose=False)
    if saved:  # the record claimed with the checkpoint's name (claim_checkpoint) gets the result
        result["record"] = save_run_record(config, result)
    return result


def _build_run(model, dataset, config_file_list, config_dict, checkpoint_file=None, resume=None, quiet=False,
               saved=True):
    """``build`` for one run: a ``resume`` file is checked before any data is built, and ``checkpoint_file``
    names the best checkpoint up front (its caller claimed it). Otherwise a new saved run claims RecBole's
    ``<model>-<time>.pth`` (``-2``, ``-3``, ... when a job started in the same second has it:
    ``checkpoint.claim_checkpoint``); a resumed one continues the files of the checkpoint it resumes."""
    if resume:
        load_checkpoint(resume)  # a refused or missing file fails before any data is built
    config, net, trainer, data = build(model, dataset, config_file_list, config_dict, quiet=quiet)
    if checkpoint_file:
        trainer.saved_model_file = str(checkpoint_file)
    elif saved and not resume and config["single_spec"]:  # processes of one run share the name of quick_start.run
        trainer.saved_model_file = claim_checkpoint(trainer.saved_model_file)
    return config, net, trainer, data


def _fit_and_test(config, net, trainer, data, saved=True, resume=None, callback_fn=None, verbose=True,
                  show_progress=False, per_user=None):
    r"""The body of ``run_recbole_micro`` and ``objective_function``: fit with early stopping on valid,
    evaluate the best checkpoint on test, and describe the run (cost, epochs, best epoch)."""
    from recbole_micro.per_user import PerUserValues

    train_data, valid_data, test_data = data
    if resume:
        trainer.resume_checkpoint(resume)
    start_epoch = trainer.start_epoch
    track, seen = _best_epoch_tracker(trainer, callback_fn)
    start = time.time()
    try:
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress, callback_fn=track
        )
    except KeyboardInterrupt as stop:  # the command line names the resume point
        last = getattr(trainer, "last_checkpoint_file", None) if saved else None
        stop.resume_point = last if last and os.path.isfile(last) else None
        raise
    seconds = time.time() - start
    capture = PerUserValues(trainer, per_user) if per_user else contextlib.nullcontext()
    with capture:
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=show_progress)
    best_epoch = seen["best_epoch"]
    if best_epoch is None and resume and saved and os.path.isfile(trainer.saved_model_file):
        best_epoch = load_checkpoint(trainer.saved_model_file)["epoch"]  # the best came before the resume
    result = _result(config, trainer, best_valid_score, best_valid_result, test_result, seconds)
    result["checkpoint"] = trainer.saved_model_file if saved else None
    result["epochs_run"] = len(trainer.train_loss_dict)
    result["start_epoch"] = start_epoch
    result["epoch_budget"] = trainer.epochs  # the config's, or 1 where RecBole's TraditionalTrainer fixes it
    result["seconds_per_epoch"] = seconds / max(1, result["epochs_run"])
    result["params"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
    result["best_epoch"] = best_epoch  # 0-based index of the selected epoch (None: no validation)
    if per_user:
        result["per_user"] = capture.values(test_data._dataset)
    return result


def load_data_and_model(model_file, data_path=None):
    r"""Rebuild config, model, dataset and dataloaders from a checkpoint written by a plugin trainer.

    The config is rebuilt from the checkpoint's plain data (never evaluated, as one process on this
    machine's device: a GPU or multi-process checkpoint loads on a CPU); ``data_path`` replaces the
    folder it recorded (the one holding ``<dataset>/``). Users and items get the internal ids they had
    in training even when the files list them in another order (``token_ids.saved_ids``); other
    tokens or other training interactions are refused with one ``CheckpointError``.
    """
    model_file = str(model_file)
    checkpoint = load_checkpoint(model_file)  # onto the CPU
    config = rebuild_config(checkpoint, model_file, data_path)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    identity = checkpoint.get("data")
    with saved_ids(identity):  # the ids of training, also when the files list the tokens in another order
        data = create_dataset(config)
    train_data, valid_data, test_data = prepare_data(config, data)
    check_identity(identity, data_identity(train_data._dataset), model_file, config["data_path"])
    init_seed(config["seed"], config["reproducibility"])
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    load_state(net, checkpoint, model_file)  # one clear error when the data changed since training
    check_finite_weights(net, model_file)  # a diverged run's weights are refused, not ranked
    return config, net, data, train_data, valid_data, test_data


def rebuild_config(checkpoint, model_file, data_path=None):
    """The ``Config`` of a loaded checkpoint; one clear line when the data folder it names is gone."""
    saved = checkpoint["config"]
    check_cache_keys(saved, f"checkpoint {model_file} refused: its stored config")  # crafted: training refuses them
    root = os.path.abspath(str(data_path)) if data_path is not None else saved.get("data_path")
    dataset = saved["dataset"]
    if not isinstance(root, str) or (dataset != DEFAULT_DATASET and not has_atoms(os.path.join(root, dataset), dataset)):
        where = "" if data_path is not None else " (recorded in the checkpoint)"
        raise CheckpointError(
            f"checkpoint {model_file}: dataset '{dataset}' has no atomic files in {os.path.join(str(root), dataset)}/"
            f"{where}; move the data back there, or pass the folder that holds {dataset}/ with --data_path=<folder> "
            f"(recommend) or load_data_and_model(..., data_path=<folder>)"
        )
    try:
        return config_from_data(saved, data_path=root)
    except (ValueError, KeyError, TypeError, ImportError, AttributeError) as exc:
        raise CheckpointError(
            f"checkpoint {model_file}: its config (model '{saved['model']}') could not be rebuilt "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); retrain"
        ) from None


# ------------------------------------------------------------------------------ multi-process training
def run(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, nproc=1, world_size=-1,
        ip="localhost", port="5678", group_offset=0):
    r"""``run_recbole_micro`` in ``nproc`` processes (RecBole's ``run``, with the plugin's pipeline).

    Each process trains on its share of every batch (RecBole's ``DistributedSampler``) and the
    gradients are averaged by RecBole's ``DistributedDataParallel``; evaluation results are merged
    across processes. GPUs: nccl, one GPU per process (RecBole's set-up): ``gpu_id`` lists them (left
    at its default, the first ``nproc`` GPUs), rank r on the r-th; no GPU: gloo on the CPU
    (``Config._init_device``), each process using ``cpu_count // nproc`` threads. Returns rank 0's
    result (``nproc == 1``: a plain ``run_recbole_micro``).

    Speed-up: only the per-batch part is split across processes. MICRO and LATTICE recompute the item
    graphs, the full propagation and (``contrastive_mode: full``) the O(N²) contrastive loss over all
    items in every process and every step, so with ``full`` more processes do not make an epoch
    faster; with ``contrastive_mode: sampled`` the per-step cost is small and the batches split well.
    """
    if nproc == 1 and world_size <= 0:
        return run_recbole_micro(model, dataset, config_file_list, config_dict, saved=saved)
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    config_dict = dict(config_dict or {})
    config_dict.update({"world_size": nproc if world_size == -1 else world_size, "ip": ip, "port": str(port),
                        "nproc": nproc, "offset": group_offset})
    stamp = time.strftime("%b-%d-%Y_%H-%M-%S") + f"-p{os.getpid()}"  # one checkpoint name for every process, per job
    mp.spawn(_run_worker, args=(model, dataset, config_file_list, config_dict, saved, queue, stamp),
             nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def _run_worker(rank, model, dataset, config_file_list, config_dict, saved, queue, stamp):
    """One process of ``run``: RecBole's trainer set-up adapted to CPU processes, then the plugin's run."""
    import recbole.trainer.trainer as recbole_trainer
    from torch.nn.parallel import DistributedDataParallel

    # nothing here may touch CUDA: Config sets CUDA_VISIBLE_DEVICES from gpu_id first (and the CPU threads)
    config_dict = dict(config_dict, local_rank=rank)

    def ddp(module, device_ids=None, **kwargs):
        # RecBole passes device_ids=[local_rank], which DistributedDataParallel refuses for a CPU module
        on_cpu = next(module.parameters()).device.type == "cpu"
        return DistributedDataParallel(module, device_ids=None if on_cpu else device_ids, **kwargs)

    # these names are looked up in this (spawned) process only: the caller's RecBole is untouched
    recbole_trainer.DistributedDataParallel = ddp
    recbole_trainer.get_local_time = lambda: stamp  # every rank saves/loads the same checkpoint file

    def wait_for_rank0_checkpoint(epoch_idx, valid_score):
        torch.distributed.barrier()  # rank 0 has written the best checkpoint before anyone reads it

    result = run_recbole_micro(model, dataset, config_file_list, config_dict, saved=saved,
                               callback_fn=wait_for_rank0_checkpoint)
    if rank == 0:
        queue.put(result)


__all__ = ["build", "run", "run_recbole_micro", "objective_function", "load_data_and_model", "save_run_record"]
