"""Trainers: RecBole's, with weights-only checkpoints, finite-loss checks and the reference schedule.

* ``SafeCheckpointMixin`` — data-only checkpoints (``checkpoint.py``: the config as plain data, token
  ids, numbers as Python floats) written atomically and read back with ``weights_only=True`` onto the
  CPU, refused when from another model, dataset or token numbering; a non-finite loss term stops
  training with its name and epoch, keeping the last good checkpoint.
* ``TieBreakEvalMixin`` (``ties.py``) — equal scores in a full ranking are ranked in a random order, not by
  item id (``tie_break``); ``CandidateEvalMixin`` (``evaluation.py``) — ``eval_candidates``.
* ``ZeroGradMixin`` — ``zero_grad_set_to_none``: False (default) zeroes the gradients as torch 1.5, the
  reference's torch, did; True lets torch >= 2.0 set them to None (Adam then skips those parameters).
* ``MultimodalTrainer`` — adds the reference learning-rate schedule lr·decay^(epoch/period)
  (MICRO/LATTICE ``LambdaLR``). The learned item graphs are rebuilt at the start of every epoch by the
  model itself (RecBole calls ``model.train()`` each epoch), so any trainer keeps that behaviour.
* ``MICROTrainer`` / ``LATTICETrainer`` — found by name (``utils.get_trainer``).
"""

import functools
import os

import torch
from recbole.trainer import Trainer as RecBoleTrainer
from recbole.utils import set_color

from recbole_micro import other_parameters
from recbole_micro.checkpoint import (
    FORMAT, best_checkpoint_of, check_compatible, check_finite_weights, last_checkpoint, load_checkpoint, load_state,
    nonfinite_parameter, plain_numbers, rng_state, save_checkpoint, set_rng_state,
)
from recbole_micro.config_data import config_to_data
from recbole_micro.errors import CheckpointError, ConfigError, RecboleMicroError
from recbole_micro.evaluation import CandidateEvalMixin
from recbole_micro.progress import EpochProgress, batch_count, progress_every
from recbole_micro.ties import TieBreakEvalMixin
from recbole_micro.token_ids import check_identity, data_identity


class NonFiniteLossError(RecboleMicroError):
    """A loss term became NaN or Inf."""


class NonFiniteWeightsError(RecboleMicroError):
    """The weights became NaN or Inf in an update whose loss was still finite (training diverged)."""


class SafeCheckpointMixin:
    """Checkpoint handling that works on torch >= 2.6; mixed into any RecBole trainer.

    Two files per run, both written atomically (``checkpoint.save_checkpoint``):

    * ``<model>-<time>.pth`` — the best model so far, written at each validation improvement
      (RecBole's rule); used for the test evaluation and by ``load_data_and_model``.
    * ``<model>-<time>-last.pth`` — the resume point: the state after the latest completed epoch,
      written at the start of every ``last_checkpoint_step``-th epoch (default: ``eval_step``, i.e. right
      after each validation; 0 = never). RecBole alone only saves at improvements, so an interrupted
      run would lose every epoch since the last one.

    Both hold the optimizer, early-stopping counters and all random-number states, so
    ``resume_checkpoint(either file)`` continues with the next epoch and reproduces the uninterrupted
    run bit for bit on CPU (same seed, config and data). Both also hold the token of every user and item
    id and a digest of the training interactions (``record_data``; ``token_ids.py``), checked whenever a
    file is loaded into this trainer's model.
    """

    _resume_rng = None
    _fit_train_data = None
    _fit_saved = False
    _last_valid_result = None
    _data_identity = None

    def record_data(self, train_dataset):
        """Remember the training data's token ids (stored in every checkpoint, checked at every load)."""
        self._data_identity = data_identity(train_dataset)

    @property
    def last_checkpoint_file(self):
        """Path of the periodic resume checkpoint beside the best one."""
        return last_checkpoint(self.saved_model_file)

    def _last_checkpoint_step(self):
        step = self.config["last_checkpoint_step"]
        return self.eval_step if step is None else int(step)

    def save_pretrained_model(self, epoch, saved_model_file):
        """RecBole's pre-training checkpoint (RaCT's pre-training stages, ``<model>-<dataset>-<epoch>.pth``) as data
        only, like every checkpoint here: RecBole's own pickles the ``Config`` object, which this plugin's loader
        refuses at the final test (and ``torch.load`` of a later stage's ``pre_model_path`` on torch >= 2.6)."""
        if self._data_identity is None and self._fit_train_data is not None:
            self.record_data(self._fit_train_data._dataset)
        save_checkpoint({"format": FORMAT, "config": config_to_data(self.config), "epoch": int(epoch),
                         "state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                         "other_parameter": other_parameters.to_data(self.model), "data": self._data_identity},
                        saved_model_file)
        self.saved_model_file = saved_model_file

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        kind = kwargs.pop("kind", "best")
        # RecBole assigns best_valid_result only after saving: take the result that triggered the save.
        best_result = self.best_valid_result
        if kind == "best" and self._last_valid_result is not None:
            best_result = self._last_valid_result
        generator = getattr(self._fit_train_data, "generator", None)
        if self._data_identity is None and self._fit_train_data is not None:
            self.record_data(self._fit_train_data._dataset)
        state = {  # data only: see checkpoint.py
            "format": FORMAT,
            "config": config_to_data(self.config),
            "epoch": int(epoch),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
            "best_valid_result": plain_numbers(best_result),
            "state_dict": self.model.state_dict(),
            "other_parameter": other_parameters.to_data(self.model),  # numpy / scipy as tensors
            "optimizer": self.optimizer.state_dict(),
            "kind": kind,
            "best_checkpoint": str(self.saved_model_file),
            "rng": rng_state(generator),
            "data": self._data_identity,
        }
        save_checkpoint(state, saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def _load_into_model(self, path):
        checkpoint = load_checkpoint(path)  # onto the CPU: load_state_dict moves tensors to the model's device
        check_compatible(checkpoint, self.config, path)
        if self._data_identity is not None:
            check_identity(checkpoint.get("data"), self._data_identity, path, self.config["data_path"],
                           reorder_hint=True)
        load_state(self.model, checkpoint, path)
        check_finite_weights(self.model, path)  # a diverged run's file is refused
        return checkpoint

    def resume_checkpoint(self, resume_file):
        """Continue an interrupted training from the epoch after the saved one (best or ``-last`` file)."""
        resume_file = str(resume_file)
        checkpoint = self._load_into_model(resume_file)
        # <stem>-last.pth continues <stem>.pth: derived from the name given, never from the file's best_checkpoint
        self.saved_model_file = best_checkpoint_of(resume_file, checkpoint.get("kind"))
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.best_valid_result = checkpoint.get("best_valid_result") or None
        # CPU state: Adam's step counters stay on the CPU (no sync per step), moments move to the parameters
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:  # groups or sizes of another model
            raise CheckpointError(
                f"checkpoint {resume_file}: field 'optimizer' does not fit this model's optimizer ({exc}); "
                f"resume with the optimizer settings of the saved run, or retrain"
            ) from None
        self._resume_rng = checkpoint.get("rng")
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._fit_train_data, self._fit_saved = train_data, saved
        if valid_data and 0 < self.epochs < self.eval_step:
            # RecBole's Trainer validates every min(eval_step, epochs) epochs, but its TraditionalTrainer (EASE,
            # ItemKNN, ...) sets the budget to one epoch after that: never validated, no best checkpoint saved, and
            # the test would find none
            self.eval_step = self.epochs
        if self._data_identity is None:
            self.record_data(train_data._dataset)
        if self._resume_rng is not None:  # after a resume: the random streams as they were at the save
            set_rng_state(self._resume_rng, getattr(train_data, "generator", None))
            self._resume_rng = None
        return super().fit(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                           callback_fn=callback_fn)

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self._last_valid_result = valid_result
        return valid_score, valid_result

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            checkpoint_file = model_file or self.saved_model_file
            self._load_into_model(checkpoint_file)
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    def _good_checkpoints(self):
        files = [f for f in (self.saved_model_file, self.last_checkpoint_file) if os.path.isfile(f)]
        return " and ".join(files) + " kept" if files else "no checkpoint was saved yet"

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        step = self._last_checkpoint_step()
        if self._fit_saved and step > 0 and epoch_idx > self.start_epoch and epoch_idx % step == 0:
            # the state after epoch_idx - 1 (and its validation): what an uninterrupted run starts from
            self._save_checkpoint(epoch_idx - 1, verbose=False, saved_model_file=self.last_checkpoint_file, kind="last")
        loss_func = loss_func or self.model.calculate_loss
        names = getattr(self.model, "loss_names", None)
        every = None if show_progress else progress_every(self.config)  # RecBole's bars show it otherwise
        progress = EpochProgress(epoch_idx, batch_count(train_data), every, self.logger.info)

        def checked(interaction):
            losses = loss_func(interaction)
            self._check_finite(losses, epoch_idx, names)
            progress.step(losses)  # a log line once progress_every seconds passed
            return losses

        loss = super()._train_epoch(train_data, epoch_idx, loss_func=checked, show_progress=show_progress)
        self._check_finite_weights(epoch_idx)
        return loss

    def _check_finite_weights(self, epoch_idx):
        """Stop when an update made the weights NaN/Inf although the loss before it was finite (e.g. a huge
        learning_rate): checked once per epoch, after its last update and before validation or any save
        (one host-device sync per epoch)."""
        name = nonfinite_parameter(self.model)
        if name is None:
            return
        raise NonFiniteWeightsError(
            f"epoch {epoch_idx}: the weights are no longer finite after the update (parameter '{name}' holds NaN "
            f"or Inf) although every loss term was finite: training diverged and stopped ({self._good_checkpoints()}); "
            f"lower learning_rate (now {self.learning_rate:g})"
        )

    def _check_finite(self, losses, epoch_idx, names=None):
        """Stop on a NaN/Inf loss term, naming it: one host–device sync per step for all terms together."""
        parts = losses if isinstance(losses, tuple) else (losses,)
        finite = torch.stack([torch.isfinite(part.detach()).all() for part in parts])
        if bool(finite.all()):
            return
        index = int((~finite).nonzero()[0, 0])  # only on the way out
        name = names[index] if names and index < len(names) else f"#{index}"
        raise NonFiniteLossError(
            f"epoch {epoch_idx}: loss term '{name}' is {parts[index].detach().float().sum().item()}; training "
            f"stopped ({self._good_checkpoints()}); lower learning_rate or check the features for "
            f"extreme values"
        )


class ZeroGradMixin:
    r"""``optimizer.zero_grad()`` with the semantics of ``zero_grad_set_to_none`` (mixed into every trainer).

    ``False`` (default): the reference's torch 1.5 — every existing gradient is zeroed in place; a
    parameter that never had one keeps ``None``. A parameter left out of a step's loss (MICRO's
    projections and raw features on every batch but an epoch's first, where the learned graph is reused
    detached) then has a zero gradient, and Adam still moves it on its momentum, as in the reference.
    ``True``: torch >= 2.0's default — gradients become ``None`` and Adam skips those parameters.
    RecBole's trainers call ``self.optimizer.zero_grad()`` with no argument; each optimizer they build
    gets this default (explicit ``set_to_none=`` arguments still win).
    """

    def _build_optimizer(self, **kwargs):
        optimizer = super()._build_optimizer(**kwargs)
        set_to_none = self.config["zero_grad_set_to_none"]
        set_to_none = False if set_to_none is None else set_to_none
        if not isinstance(set_to_none, bool):
            raise ConfigError(
                f"config key 'zero_grad_set_to_none' is {set_to_none!r}; use False (the reference's torch 1.5 "
                f"semantics) or True (torch >= 2.0's)"
            )
        optimizer.zero_grad = functools.partial(optimizer.zero_grad, set_to_none=set_to_none)
        return optimizer


class Trainer(TieBreakEvalMixin, ZeroGradMixin, CandidateEvalMixin, SafeCheckpointMixin, RecBoleTrainer):
    """RecBole's ``Trainer`` with safe checkpoints (used for RecBole's general models)."""


_WRAPPED = {RecBoleTrainer: Trainer}


def with_safe_checkpoints(trainer_class):
    """``trainer_class`` with ``SafeCheckpointMixin`` mixed in (cached, one class per trainer)."""
    if issubclass(trainer_class, SafeCheckpointMixin):
        return trainer_class
    if trainer_class not in _WRAPPED:
        _WRAPPED[trainer_class] = type(trainer_class.__name__, (TieBreakEvalMixin, ZeroGradMixin, CandidateEvalMixin,
                                                       SafeCheckpointMixin, trainer_class), {})
    return _WRAPPED[trainer_class]


class MultimodalTrainer(Trainer):
    r"""The reference schedule: learning rate lr · ``lr_decay`` ^ (epoch / ``lr_decay_period``)."""

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        decay = self.config["lr_decay"] or 1.0
        period = self.config["lr_decay_period"] or 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate * decay ** (epoch_idx / period)
        return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)


class MICROTrainer(MultimodalTrainer):
    """Trainer of ``MICRO`` (found by name)."""


class LATTICETrainer(MultimodalTrainer):
    """Trainer of ``LATTICE`` (found by name): the reference schedule lr·0.96^(epoch/50), safe
    checkpoints, finite-loss checks and candidate-restricted evaluation, as for MICRO."""
