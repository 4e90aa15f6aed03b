"""``Config``: RecBole's configuration with the plugin's ``properties/`` layered on top.

Order (later wins): RecBole's overall.yaml → the plugin's overall.yaml → RecBole's model yaml →
the plugin's model yaml → RecBole's dataset yamls → the plugin's dataset yaml → the dataset's own
``<data_path>/<dataset>/<dataset>.yaml`` (written by the converter) → config files → config dict →
command line. Nothing of RecBole's is copied: plugin yamls only hold what differs.
"""

import os

from recbole.config import Config as RecBoleConfig

from recbole_micro.data.dataset import parse_modalities
from recbole_micro.data.locate import check_yaml_file, ensure_dataset
from recbole_micro.utils import PROPERTIES_DIR, get_model


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
        self._add_modality_atoms()

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
            self._add_yaml(own, True)

    def _add_yaml(self, file, is_dataset):
        config_dict = self._update_internal_config_dict(file) or {}
        if is_dataset:
            self.parameters["Dataset"] += [k for k in config_dict if k not in self.parameters["Dataset"]]

    def _init_device(self):
        r"""RecBole's device set-up, plus multi-process training without GPUs.

        With ``local_rank`` set (a process started by ``quick_start.run(nproc=...)``) and CUDA
        available, RecBole's own set-up runs (nccl, one GPU per process). Without CUDA (or with
        ``gpu_id: ''``), RecBole's would assert one GPU per process and start nccl; here the process
        group uses gloo and every process trains on the CPU instead.
        """
        import torch

        gpu_id = self.final_config_dict["gpu_id"]
        gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)
        if "local_rank" not in self.final_config_dict or (len(gpu_id) > 0 and torch.cuda.is_available()):
            return super()._init_device()
        self.final_config_dict["gpu_id"] = gpu_id
        rank = self.final_config_dict["local_rank"] + (self.final_config_dict.get("offset") or 0)
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(
                backend="gloo",
                rank=rank,
                world_size=self.final_config_dict["world_size"],
                init_method=f"tcp://{self.final_config_dict['ip']}:{self.final_config_dict['port']}",
            )
        self.final_config_dict["device"] = torch.device("cpu")
        self.final_config_dict["single_spec"] = False
        if self.final_config_dict["local_rank"] != 0:  # as RecBole: only rank 0 logs
            self.final_config_dict["state"] = "error"
            self.final_config_dict["show_progress"] = False
            self.final_config_dict["verbose"] = False

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
