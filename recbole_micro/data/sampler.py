r"""Each model's native training batches (``train_sampler``): the reference's for MICRO and LATTICE, RecBole's
for every other model (``results/baseline-strength.md``: BPR on the reference's batches stays 22 % below its
published number, on its own batches it exceeds it).

* ``user`` (MICRO's and LATTICE's default) — the MICRO/LATTICE reference sampler (``codes/utility/load_data.py``
  ``Data.sample``, ``../shared/design/micro.md`` §8): each step draws ``train_batch_size`` DISTINCT
  users uniformly among the users with training interactions (``random.sample``), one uniform positive
  from each user's training items and one uniform negative outside them; an epoch is
  ``n_train // train_batch_size + 1`` steps. Light users thus get as many steps as heavy ones.
* ``interaction`` (every other model's default) — RecBole's ``TrainDataLoader``: every training interaction once
  per epoch.

``UserSampleTrainDataLoader`` only replaces WHICH training interactions form a batch: a batch is the
rows ``dataset[rows]`` of the drawn (user, positive) pairs, transformed and negative-sampled by
RecBole's own ``TrainDataLoader`` code, so it carries exactly the fields RecBole's loader gives
(``user_id``, ``item_id``, ``neg_item_id``, any joined features, the label of pointwise models) and
follows ``train_neg_sample_args`` (uniform negatives outside the user's training items, as the
reference; popularity or dynamic negatives and ``sample_num`` > 1 work as in RecBole, a step then
drawing ``train_batch_size // sample_num`` users). Negatives come from all items with no training
interaction of that user — cold items included, as the reference's ``randint(0, n_items)`` draw.

Rules beyond the reference:

* a batch larger than the number of users with training items draws its users WITH replacement
  (the reference's own branch for a batch larger than its user count; where its ``random.sample``
  would fail in between, the same rule applies);
* with several processes (DDP) every process makes the same global draw from the loader's
  ``generator`` (seeded alike) and keeps positions ``rank, rank + world, …`` of it (RecBole's
  ``DistributedSampler`` split), so the processes train on disjoint users and together on exactly the
  one-process batch; every process runs the same number of steps;
* RecBole's non-general models (sequential, context-aware, knowledge-aware) keep RecBole's loader,
  with a warning: the reference protocol is defined for user–item recommenders only.

Random streams: users and positives from the loader's own ``generator`` (saved and restored by the
checkpoints, ``checkpoint.rng_state``), negatives from RecBole's sampler (numpy's global stream, also
saved), so a resumed run continues bit for bit.
"""

from logging import getLogger

import numpy as np
import torch
from recbole.data.dataloader import TrainDataLoader
from recbole.utils import ModelType

from recbole_micro.errors import ConfigError

TRAIN_SAMPLERS = ("user", "interaction")


def train_sampler_mode(config):
    """The configured ``train_sampler`` (``interaction``, RecBole's, when unset), validated."""
    mode = config["train_sampler"] or "interaction"
    if mode not in TRAIN_SAMPLERS:
        raise ConfigError(
            f"config key 'train_sampler' is {mode!r}; use one of {list(TRAIN_SAMPLERS)} (user = the reference's "
            f"distinct users per step, interaction = RecBole's pass over every training interaction)"
        )
    return mode


class UserSampleTrainDataLoader(TrainDataLoader):
    r"""Reference batches (module doc): ``len()`` = ``n_train // users_per_step + 1`` steps per epoch."""

    def __init__(self, config, dataset, sampler, shuffle=False):
        super().__init__(config, dataset, sampler, shuffle=False)  # torch's shuffling is not used
        users = dataset.inter_feat[dataset.uid_field].numpy()
        counts = np.bincount(users, minlength=dataset.user_num)
        self.n_train = len(users)
        self.users = torch.from_numpy(np.flatnonzero(counts))  # users with training interactions
        # the training rows of user u: rows_by_user[start[u] : start[u] + count[u]]
        self._rows_by_user = torch.from_numpy(np.argsort(users, kind="stable"))
        self._count = torch.from_numpy(counts)
        self._start = torch.from_numpy(np.cumsum(counts) - counts)
        self.rank, self.world = 0, 1
        if not config["single_spec"] and torch.distributed.is_initialized():
            self.rank, self.world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        if self.with_replacement:
            getLogger().warning(
                f"train_sampler: user — train_batch_size {config['train_batch_size']} exceeds the "
                f"{len(self.users)} users with training interactions: each step draws its users with replacement"
            )

    @property
    def users_per_step(self):
        """Users of one global step (all processes together): ``train_batch_size // sample_num``."""
        return max(1, int(self.config["train_batch_size"]) // self.times)

    @property
    def with_replacement(self):
        return self.users_per_step > len(self.users)

    def __len__(self):
        return self.n_train // self.users_per_step + 1

    def draw_users(self):
        """One step's global draw of users (distinct unless the batch exceeds them)."""
        n, size = len(self.users), self.users_per_step
        if self.with_replacement:
            picks = torch.randint(n, (size,), generator=self.generator)
        else:
            picks = torch.randperm(n, generator=self.generator)[:size]
        return self.users[picks]

    def draw_positive_rows(self, users):
        """For each user one uniform training interaction (its row in the training dataset)."""
        count = self._count[users]
        offset = (torch.rand(len(users), generator=self.generator, dtype=torch.float64) * count).long()
        offset = torch.minimum(offset, count - 1)  # guards the float rounding at u -> 1
        return self._rows_by_user[self._start[users] + offset]

    def next_batch(self):
        """This process's share of one step: the rows of its users, negative-sampled as RecBole does."""
        rows = self.draw_positive_rows(self.draw_users())[self.rank :: self.world]
        data = self._dataset[rows.numpy()]
        return self._neg_sampling(self.transform(self._dataset, data))

    def __iter__(self):
        for _ in range(len(self)):
            yield self.next_batch()


def train_dataloader(config, train_data):
    r"""The training loader of ``train_sampler``: ``train_data`` (RecBole's) for ``interaction`` and
    for RecBole's non-general models, else a ``UserSampleTrainDataLoader`` over the same data."""
    if train_sampler_mode(config) == "interaction":
        return train_data
    if config["MODEL_TYPE"] not in (ModelType.GENERAL, ModelType.TRADITIONAL) or not isinstance(train_data, TrainDataLoader):
        getLogger().warning(
            f"train_sampler: user applies to general recommenders; {config['model']} "
            f"({config['MODEL_TYPE'].name.lower()}) trains with RecBole's loader (train_sampler: interaction)"
        )
        return train_data
    return UserSampleTrainDataLoader(config, train_data._dataset, train_data._sampler)


__all__ = ["TRAIN_SAMPLERS", "UserSampleTrainDataLoader", "train_dataloader", "train_sampler_mode"]
