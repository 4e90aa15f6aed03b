r"""Per-user metric values of one full-ranking evaluation, from RecBole's own collector.

RecBole's evaluator averages each top-k metric over the evaluated users. ``PerUserValues`` wraps one
``trainer.evaluate`` call: it records the user ids of every evaluated batch and the ``rec.topk``
matrix the collector gathered (the hit flags of each user's top-k and its number of held-out items),
then applies the metric's own ``metric_info`` (``recbole.evaluator.metrics``) to get one value per user
— whose mean is exactly what the evaluator reported. Users are returned as their tokens, so two
models' vectors can be paired user by user (``tools.stats.paired_user_test``).
"""

import inspect

import numpy as np
from recbole.evaluator.register import metrics_dict

from recbole_micro.errors import ConfigError


def split_metric(key):
    """``'recall@20'`` → ``('recall', 20)``."""
    name, _, k = key.lower().partition("@")
    if name not in metrics_dict or not k.isdigit():
        raise ConfigError(f"per-user metric '{key}' is not a RecBole top-k metric written name@k (e.g. recall@20)")
    return name, int(k)


class PerUserValues:
    r"""``with PerUserValues(trainer, ["recall@20"]) as capture: trainer.evaluate(test_data)``, then
    ``capture.values(test_data._dataset)`` → ``{"users": tokens, "recall@20": float32 array}``."""

    def __init__(self, trainer, metrics):
        self.trainer = trainer
        self.metrics = [split_metric(m) for m in metrics]
        self._users, self._struct, self._restore = [], None, []

    def __enter__(self):
        collector, evaluator = self.trainer.eval_collector, self.trainer.evaluator
        uid_field = self.trainer.config["USER_ID_FIELD"]
        collect, evaluate = collector.eval_batch_collect, evaluator.evaluate

        def recording_collect(scores, interaction, positive_u, positive_i):
            self._users.append(interaction[uid_field].detach().cpu())
            return collect(scores, interaction, positive_u, positive_i)

        def recording_evaluate(struct):
            self._struct = struct
            return evaluate(struct)

        collector.eval_batch_collect, evaluator.evaluate = recording_collect, recording_evaluate
        self._restore = [(collector, "eval_batch_collect"), (evaluator, "evaluate")]
        return self

    def __exit__(self, *exc):
        for owner, name in self._restore:
            owner.__dict__.pop(name, None)  # back to the class's method
        return False

    def values(self, dataset):
        """Per-user values of the captured evaluation, users as tokens of ``dataset``."""
        if self._struct is None or "rec.topk" not in self._struct:
            raise ConfigError("per-user values need a full-ranking evaluation with top-k metrics "
                              "(eval_args.mode: full, metrics such as Recall)")
        users = np.concatenate([u.numpy() for u in self._users]).astype(np.int64)
        result = {"users": np.asarray(dataset.id2token(dataset.uid_field, users)).astype(str)}
        config = self.trainer.config
        for name, k in self.metrics:
            metric = metrics_dict[name](config)
            pos_index, pos_len = metric.used_info(self._struct)
            if k > pos_index.shape[1]:
                raise ConfigError(f"per-user {name}@{k} needs k within topk {config['topk']}")
            wants_len = len(inspect.signature(metric.metric_info).parameters) >= 2
            matrix = metric.metric_info(pos_index, pos_len) if wants_len else metric.metric_info(pos_index)
            result[f"{name}@{k}"] = np.asarray(matrix[:, k - 1], dtype=np.float64)
        if len(result["users"]) != len(next(iter(result.values()), [])):
            raise ConfigError("per-user values: the evaluated users and the collected rows differ in number")
        return result
