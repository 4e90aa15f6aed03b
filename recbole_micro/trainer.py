"""Trainers: RecBole's, with weights-only checkpoints, finite-loss checks and the reference schedule.

* ``SafeCheckpointMixin`` — checkpoints written atomically with pickle protocol 2 and read back with
  ``weights_only=True`` (``checkpoint.py``), refused when from another model or dataset; a non-finite
  loss term stops training with its name and epoch, keeping the last good checkpoint.
* ``MultimodalTrainer`` — adds the reference learning-rate schedule lr·decay^(epoch/period)
  (MICRO/LATTICE ``LambdaLR``). The learned item graphs are rebuilt at the start of every epoch by the
  model itself (RecBole calls ``model.train()`` each epoch), so any trainer keeps that behaviour.
* ``MICROTrainer`` / ``LATTICETrainer`` — found by name (``utils.get_trainer``).
"""

import torch
from recbole.trainer import Trainer as RecBoleTrainer
from recbole.utils import set_color

from recbole_micro.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from recbole_micro.errors import RecboleMicroError


class NonFiniteLossError(RecboleMicroError):
    """A loss term became NaN or Inf."""


class SafeCheckpointMixin:
    """Checkpoint handling that works on torch >= 2.6; mixed into any RecBole trainer."""

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": self.config,
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "best_valid_result": dict(self.best_valid_result or {}),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }
        save_checkpoint(state, saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def _load_into_model(self, path):
        checkpoint = load_checkpoint(path, map_location=self.device)
        check_compatible(checkpoint, self.config, path)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        return checkpoint

    def resume_checkpoint(self, resume_file):
        """Continue an interrupted training from the epoch after the saved one."""
        resume_file = str(resume_file)
        checkpoint = self._load_into_model(resume_file)
        self.saved_model_file = resume_file
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.best_valid_result = checkpoint.get("best_valid_result") or None
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            checkpoint_file = model_file or self.saved_model_file
            self._load_into_model(checkpoint_file)
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss_func = loss_func or self.model.calculate_loss
        names = getattr(self.model, "loss_names", None)

        def checked(interaction):
            losses = loss_func(interaction)
            parts = losses if isinstance(losses, tuple) else (losses,)
            for index, part in enumerate(parts):
                if not torch.isfinite(part).all():
                    name = names[index] if names and index < len(names) else f"#{index}"
                    raise NonFiniteLossError(
                        f"epoch {epoch_idx}: loss term '{name}' is {part.item()}; training stopped and the last "
                        f"good checkpoint {self.saved_model_file} is kept; lower learning_rate or check the features"
                    )
            return losses

        return super()._train_epoch(train_data, epoch_idx, loss_func=checked, show_progress=show_progress)


class Trainer(SafeCheckpointMixin, RecBoleTrainer):
    """RecBole's ``Trainer`` with safe checkpoints (used for RecBole's general models)."""


_WRAPPED = {RecBoleTrainer: Trainer}


def with_safe_checkpoints(trainer_class):
    """``trainer_class`` with ``SafeCheckpointMixin`` mixed in (cached, one class per trainer)."""
    if issubclass(trainer_class, SafeCheckpointMixin):
        return trainer_class
    if trainer_class not in _WRAPPED:
        _WRAPPED[trainer_class] = type(trainer_class.__name__, (SafeCheckpointMixin, trainer_class), {})
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
