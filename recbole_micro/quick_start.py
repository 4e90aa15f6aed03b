"""Quick start: ``run_recbole_micro`` (train + test one model), ``objective_function`` (for RecBole's
``HyperTuning``) and ``load_data_and_model`` (rebuild data and model from a checkpoint).

RecBole's own versions look models up inside RecBole only; these build the same pipeline
(Config → create_dataset → data_preparation → model → trainer) with the plugin's look-ups, so plugin
models and RecBole's baselines run through one path on the same data and split.
"""

import json
import logging
import os
import time
from logging import getLogger

import torch
from recbole.data import data_preparation
from recbole.utils import get_environment, init_logger, init_seed, set_color

from recbole_micro.checkpoint import load_checkpoint, load_state
from recbole_micro.config import Config
from recbole_micro.data.sampler import train_dataloader
from recbole_micro.evaluation import apply_test_mask
from recbole_micro.utils import create_dataset, get_model, get_trainer


def build(model=None, dataset=None, config_file_list=None, config_dict=None, quiet=False):
    r"""Config, dataloaders, model and trainer of one run (everything but training)."""
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
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
    train_data, valid_data, test_data = data_preparation(config, data)
    train_data = train_dataloader(config, train_data)  # train_sampler: user = the reference's batches
    apply_test_mask(config, test_data, train_data._dataset)  # test_mask_valid: False = the reference's test ranking
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_class = get_model(config["model"])
    net = model_class(config, train_data._dataset).to(config["device"])
    logger.info(net)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
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


def save_run_record(config, result):
    """Write the full resolved config and the result beside the checkpoint (``<checkpoint>.json``)."""
    path = os.path.splitext(result["checkpoint"])[0] + ".json"
    resolved = {k: v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else str(v)
                for k, v in config.final_config_dict.items()}
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"result": result, "config": resolved}, f, indent=1, default=str)
    return path


def run_recbole_micro(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True,
                      resume=None, callback_fn=None):
    r"""Train ``model`` on ``dataset``, select on validation, evaluate the best checkpoint on test.

    Returns a dict with ``best_valid_score``, ``best_valid_result``, ``test_result``, ``checkpoint``
    and ``train_seconds``; the resolved config and the result are saved as ``<checkpoint>.json``.
    ``resume`` continues an interrupted run from its checkpoint.
    """
    config, net, trainer, (train_data, valid_data, test_data) = build(model, dataset, config_file_list, config_dict)
    logger = getLogger()
    if resume:
        trainer.resume_checkpoint(resume)
    track, seen = _best_epoch_tracker(trainer, callback_fn)
    start = time.time()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"], callback_fn=track
    )
    seconds = time.time() - start
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    result = _result(config, trainer, best_valid_score, best_valid_result, test_result, seconds)
    result["epochs_run"] = len(trainer.train_loss_dict)
    result["seconds_per_epoch"] = seconds / max(1, result["epochs_run"])
    result["params"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
    result["best_epoch"] = seen["best_epoch"]  # 0-based index of the selected epoch (None: no validation)
    if saved and config["local_rank"] == 0:  # one record per run, also with several processes
        result["record"] = save_run_record(config, result)
    if not config["single_spec"]:
        torch.distributed.destroy_process_group()
    return result


def objective_function(config_dict=None, config_file_list=None, saved=True):
    r"""Objective for RecBole's ``HyperTuning``: one quiet training run, selected on validation
    (no resume checkpoints: a trial that dies is simply re-run)."""
    config_dict = {"last_checkpoint_step": 0, **(config_dict or {})}
    config, net, trainer, (train_data, valid_data, test_data) = build(
        config_file_list=config_file_list, config_dict=config_dict, quiet=True
    )
    track, seen = _best_epoch_tracker(trainer)
    start = time.time()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, verbose=False, saved=saved, callback_fn=track
    )
    seconds = time.time() - start
    test_result = trainer.evaluate(test_data, load_best_model=saved)
    epochs_run = len(trainer.train_loss_dict)
    return {
        "model": config["model"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "epochs_run": epochs_run,
        "best_epoch": seen["best_epoch"],
        "train_seconds": seconds,
        "seconds_per_epoch": seconds / max(1, epochs_run),
        "params": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "checkpoint": trainer.saved_model_file if saved else None,
    }


def load_data_and_model(model_file):
    r"""Rebuild config, model, dataset and dataloaders from a checkpoint written by a plugin trainer."""
    checkpoint = load_checkpoint(model_file)
    config = checkpoint["config"]
    config["device"] = torch.device("cpu") if not torch.cuda.is_available() else config["device"]
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    init_seed(config["seed"], config["reproducibility"])
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    load_state(net, checkpoint, model_file)  # one clear error when the data changed since training
    return config, net, data, train_data, valid_data, test_data


# ------------------------------------------------------------------------------ multi-process training
def run(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, nproc=1, world_size=-1,
        ip="localhost", port="5678", group_offset=0):
    r"""``run_recbole_micro`` in ``nproc`` processes (RecBole's ``run``, with the plugin's pipeline).

    Each process trains on its share of every batch (RecBole's ``DistributedSampler``) and the
    gradients are averaged by RecBole's ``DistributedDataParallel``; evaluation results are merged
    across processes. GPUs: nccl, one GPU per process (RecBole's set-up); no GPU: gloo on the CPU
    (``Config._init_device``), each process using ``cpu_count // nproc`` threads. Returns rank 0's
    result (``nproc == 1``: a plain ``run_recbole_micro``).
    """
    if nproc == 1 and world_size <= 0:
        return run_recbole_micro(model, dataset, config_file_list, config_dict, saved=saved)
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    config_dict = dict(config_dict or {})
    config_dict.update({"world_size": nproc if world_size == -1 else world_size, "ip": ip, "port": str(port),
                        "nproc": nproc, "offset": group_offset})
    stamp = time.strftime("%b-%d-%Y_%H-%M-%S")  # one checkpoint name for every process
    mp.spawn(_run_worker, args=(model, dataset, config_file_list, config_dict, saved, queue, stamp),
             nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def _run_worker(rank, model, dataset, config_file_list, config_dict, saved, queue, stamp):
    """One process of ``run``: RecBole's trainer set-up adapted to CPU processes, then the plugin's run."""
    import recbole.trainer.trainer as recbole_trainer
    from torch.nn.parallel import DistributedDataParallel

    config_dict = dict(config_dict, local_rank=rank)
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // config_dict["nproc"]))

    def ddp(module, device_ids=None, **kwargs):
        # RecBole passes device_ids=[local_rank], which DistributedDataParallel refuses for a CPU module
        on_cpu = next(module.parameters()).device.type == "cpu"
        return DistributedDataParallel(module, device_ids=None if on_cpu else device_ids, **kwargs)

    # these names are looked up in this (spawned) process only: the caller's RecBole is untouched
    recbole_trainer.DistributedDataParallel = ddp
    recbole_trainer.get_local_time = lambda: stamp  # every rank saves/loads the same checkpoint file
    recbole_trainer.ensure_dir = lambda path: os.makedirs(path, exist_ok=True)  # ranks create it concurrently

    def wait_for_rank0_checkpoint(epoch_idx, valid_score):
        torch.distributed.barrier()  # rank 0 has written the best checkpoint before anyone reads it

    result = run_recbole_micro(model, dataset, config_file_list, config_dict, saved=saved,
                               callback_fn=wait_for_rank0_checkpoint)
    if rank == 0:
        queue.put(result)


__all__ = ["build", "run", "run_recbole_micro", "objective_function", "load_data_and_model", "save_run_record"]
