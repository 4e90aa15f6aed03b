"""``Config``: RecBole's configuration with the plugin's ``properties/`` layered on top.

Order (later wins): RecBole's overall.yaml → the plugin's overall.yaml → RecBole's model yaml →
the plugin's model yaml → RecBole's dataset yamls → the plugin's dataset yaml → the dataset's own
``<data_path>/<dataset>/<dataset>.yaml`` (written by the converter) → config files → config dict →
command line. Nothing of RecBole's is copied: plugin yamls only hold what differs.

Values from files are never evaluated: yaml files are read with a safe loader (plain scalars, lists and
maps only), and ``config_dict`` values pass through as the typed Python values they are (RecBole's own
``Config`` runs ``eval()`` on every string of ``config_dict``). Only ``--key=value`` arguments of the
command line are converted as RecBole converts them: the user typed them. ``config_data.config_to_data`` /
``config_from_data`` turn a resolved config into plain data (stored in checkpoints) and back.
"""

import copy
import os
import re
import sys

import yaml
from recbole.config import Config as RecBoleConfig

from recbole_micro.config_data import DERIVED_KEYS, PROCESS_KEYS
from recbole_micro.data.caches import check_cache_keys
from recbole_micro.data.dataset import parse_modalities
from recbole_micro.data.locate import check_yaml_file, ensure_dataset
from recbole_micro.errors import ConfigError
from recbole_micro.utils import PROPERTIES_DIR, get_model

# Keys a dataset's own yaml (a file in the data folder, shared with the data) may not set: where the run reads
# and writes, what it trains, the files a model loads, processes, network and outside services.
NOT_DATASET_KEYS = frozenset({
    "model", "dataset", "data_path", "checkpoint_dir", "pre_model_path", "pretrain_path", "mf_pretrain_path",
    "mlp_pretrain_path", "warm_up", "world_size", "nproc", "offset", "ip", "port", "local_rank", "log_wandb",
    "wandb_project",
})
# RecBole keys whose string value RecBole itself passes to eval() (KD_DAGFM's teacher class name).
EVALUATED_BY_RECBOLE = ("teacher",)


class _SafeLoader(yaml.SafeLoader):
    """yaml's safe loader (no Python tags) with RecBole's float resolver (``1e-3`` is a float)."""


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def dataset_dir(data_path, dataset):
    """Folder of a dataset's atomic files (RecBole's convention: ``<data_path>/<dataset>``)."""
    return os.path.join(data_path, dataset)


class Config(RecBoleConfig):
    r"""RecBole ``Config`` that finds plugin models by name and reads the plugin's yaml defaults.

    Multimodal datasets name their feature atoms in ``modalities``; they are added to RecBole's
    ``additional_feat_suffix`` (and ``load_col``) so RecBole loads and remaps them.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None):
        super().__init__(model, dataset, config_file_list, config_dict)
        self._refuse_cache_keys(config_file_list)
        self._add_modality_atoms()
        for key in EVALUATED_BY_RECBOLE:
            value = self.final_config_dict.get(key)
            if value is not None and not (isinstance(value, str) and value.isidentifier()):
                raise ConfigError(f"config key '{key}' is {value!r}; it must be a model class name (RecBole evaluates it)")

    def _refuse_cache_keys(self, config_file_list):
        """RecBole's pickle caches stay off (``data.caches``): one line naming the source that turns one on."""
        files = ", ".join(str(f) for f in config_file_list or [])
        for values, where in ((self.cmd_config_dict, "command line"), (self.variable_config_dict, "config_dict"),
                              (self.file_config_dict, f"config file(s) {files}"),
                              (self.final_config_dict, "the plugin's or RecBole's yaml defaults")):
            check_cache_keys(values, where)

    def _build_yaml_loader(self):
        return _SafeLoader

    def _load_variable_config_dict(self, config_dict):
        """``config_dict`` as given: typed values, never evaluated (RecBole ``eval()``s its strings)."""
        return dict(config_dict) if config_dict else {}

    def _get_model_and_dataset(self, model, dataset):
        if isinstance(model, str):
            model = get_model(model)
        elif model is None and isinstance(self.external_config_dict.get("model"), str):
            model = get_model(self.external_config_dict["model"])
        return super()._get_model_and_dataset(model, dataset)

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        rb_model_file = os.path.join(
            os.path.dirname(os.path.realpath(__import__("recbole").__file__)),
            "properties", "model", f"{model}.yaml",
        )
        plugin_files = [
            (os.path.join(PROPERTIES_DIR, "overall.yaml"), False),
            (rb_model_file, False),  # keep RecBole's model defaults above the plugin's overall ones
            (os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml"), False),
            (os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml"), True),
        ]
        for file, is_dataset in plugin_files:
            if os.path.isfile(file):
                self._add_yaml(file, is_dataset)
        data_path = self.external_config_dict.get("data_path") or self.internal_config_dict["data_path"]
        ensure_dataset(dataset, data_path)
        own = os.path.join(dataset_dir(data_path, dataset), f"{dataset}.yaml")
        if os.path.isfile(own):
            refused = sorted(set(self._add_yaml(own, True)) & NOT_DATASET_KEYS)
            if refused:
                raise ConfigError(
                    f"{own}: the dataset's yaml sets '{refused[0]}', which a data folder may not decide (where the run "
                    f"reads or writes, what it trains, processes or outside services); remove it from the dataset "
                    f"yaml and set it on the command line or in your own config file")

    def _add_yaml(self, file, is_dataset):
        config_dict = self._update_internal_config_dict(file) or {}
        check_cache_keys(config_dict, file)  # e.g. the dataset's own yaml in its data folder
        if is_dataset:
            self.parameters["Dataset"] += [k for k in config_dict if k not in self.parameters["Dataset"]]
        return config_dict

    def _init_device(self):
        r"""RecBole's device set-up, with the visible GPUs fixed before anything initialises CUDA, plus
        multi-process training without GPUs.

        ``CUDA_VISIBLE_DEVICES`` is set from ``gpu_id`` first (``process_gpu_ids``: with ``nproc`` ≥ 2
        and ``gpu_id`` left at its default, the first ``nproc`` GPUs), then ``deterministic: True``
        applies (``set_deterministic``), and only then is CUDA queried, so that rank r really runs
        on the r-th GPU of ``gpu_id``. With ``local_rank`` set (a process started by
        ``quick_start.run(nproc=...)``) and CUDA available, RecBole's own set-up runs (nccl, one GPU per
        process). Without CUDA (or with ``gpu_id: ''``), RecBole's would assert one GPU per process
        and start nccl; here the process group uses gloo and every process trains on the CPU with
        ``cpu_count // nproc`` threads.
        """
        final = self.final_config_dict
        multi = "local_rank" in final
        gpu_id = normalise_gpu_id(final["gpu_id"])
        if multi:
            gpu_id = process_gpu_ids(gpu_id, final["nproc"], user_set="gpu_id" in self.external_config_dict)
        final["gpu_id"] = gpu_id
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id  # before the first CUDA query below
        set_deterministic(bool(final.get("deterministic")))
        import torch

        cuda = len(gpu_id) > 0 and torch.cuda.is_available()
        if not multi or cuda:
            if multi:
                check_gpu_count(gpu_id, final["nproc"], torch.cuda.device_count())
            return super()._init_device()
        rank = final["local_rank"] + (final.get("offset") or 0)
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(
                backend="gloo",
                rank=rank,
                world_size=final["world_size"],
                init_method=f"tcp://{final['ip']}:{final['port']}",
            )
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, int(final["nproc"]))))
        final["device"] = torch.device("cpu")
        final["single_spec"] = False
        if final["local_rank"] != 0:  # as RecBole: only rank 0 logs
            final["state"] = "error"
            final["show_progress"] = False
            final["verbose"] = False

    def _load_config_files(self, file_list):
        for file in file_list or []:  # a missing file or a yaml syntax error: one line naming file and line
            check_yaml_file(file)
        return super()._load_config_files(file_list)

    def _add_modality_atoms(self):
        given = self.final_config_dict.get("modalities")
        modalities = parse_modalities(given, self.final_config_dict.get("dataset"))  # also `--modalities=image`
        if given is not None:
            self.final_config_dict["modalities"] = modalities
        if not modalities:
            return
        suffixes = list(self.final_config_dict.get("additional_feat_suffix") or [])
        self.final_config_dict["additional_feat_suffix"] = suffixes + [m for m in modalities if m not in suffixes]
        load_col = self.final_config_dict.get("load_col")
        if load_col is not None:
            load_col = dict(load_col)
            for modality in modalities:
                load_col.setdefault(modality, "*")
            self.final_config_dict["load_col"] = load_col


# ------------------------------------------------------------------------------ devices
def normalise_gpu_id(gpu_id):
    """``gpu_id`` as RecBole keeps it: a comma-separated string (``(0, 1)`` → ``'0,1'``, ``None`` → ``''``)."""
    if gpu_id is None:
        return ""
    if isinstance(gpu_id, (tuple, list)):
        return ",".join(map(str, gpu_id))
    return str(gpu_id).replace(" ", "")


def process_gpu_ids(gpu_id, nproc, user_set):
    """The ``gpu_id`` of an ``nproc``-process run: RecBole needs one GPU per process, so the default
    ``'0'`` (not set by the user) becomes ``'0,1,...,nproc-1'``; a ``gpu_id`` the user set is kept
    (``check_gpu_count`` refuses too few GPUs once CUDA is known to be there)."""
    nproc = int(nproc)
    if not user_set and nproc > 1 and len(gpu_id.split(",")) < nproc:
        return ",".join(str(i) for i in range(nproc))
    return gpu_id


def check_gpu_count(gpu_id, nproc, visible):
    """One clear line when an ``nproc``-process GPU run has fewer than ``nproc`` GPUs (RecBole asserts)."""
    listed = [g for g in gpu_id.split(",") if g]
    if len(listed) < int(nproc) or visible < int(nproc):
        raise ConfigError(
            f"config key 'gpu_id' is '{gpu_id}' ({min(len(listed), visible)} usable GPUs) but nproc={nproc} "
            f"processes need one GPU each; set --gpu_id={','.join(map(str, range(int(nproc))))} (GPUs that "
            f"exist), lower nproc, or set gpu_id='' to train the processes on the CPU"
        )


def set_deterministic(enabled):
    """``deterministic: True``: deterministic torch kernels everywhere (``torch.use_deterministic_algorithms``),
    with ``CUBLAS_WORKSPACE_CONFIG`` set first, as CUDA matmuls require (kept if already set). Must run
    before CUDA initialises. ``reproducibility: True`` alone only fixes cuDNN's flags (RecBole's
    ``init_seed``); scatter/index backward on a GPU then still varies slightly between runs."""
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    torch.use_deterministic_algorithms(True)


# ------------------------------------------------------------------------------ config as data
def config_from_data(values, data_path=None):
    r"""A ``Config`` rebuilt from ``config_to_data``'s output; its values are used as they are (never
    evaluated) and the command line is not read. ``data_path`` replaces the stored folder."""
    values = {k: copy.deepcopy(v) for k, v in values.items() if k not in DERIVED_KEYS and k not in PROCESS_KEYS}
    if data_path is not None:
        values["data_path"] = os.path.abspath(str(data_path))
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        return Config(model=values["model"], dataset=values["dataset"], config_dict=values)
    finally:
        sys.argv = argv
