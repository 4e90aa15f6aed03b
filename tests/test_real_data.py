"""Amazon Baby (``../shared/data/baby``): the fixed kNN-10 graphs MICRO builds from the converted
features recover the real image and text kNN-10 graphs (``knn/{image,text}_knn10.npz``).

The bundled features are reconstructed so that their cosine kNN-10 reproduces the real graphs
(its README gives recall 0.9931 image / 0.9958 text); the test goes through the whole path:
converter → atomic files → RecBole remap → MultimodalDataset → MICRO.original_adj → back to source ids.
"""

import numpy as np

from conftest import run_config
from recbole_micro.data import convert_lattice
from recbole_micro.quick_start import build

MIN_RECALL = 0.99


def graph_recall(adj, dataset, real_index):
    """Fraction of the real (i, j) neighbour pairs (source ids) present in ``adj`` (internal ids)."""
    adj = adj.coalesce()
    rows, cols = adj.indices().numpy()
    tokens = dataset.field2id_token["item_id"]
    src_rows = np.array([int(t) for t in tokens[rows]])
    src_cols = np.array([int(t) for t in tokens[cols]])
    n = real_index.shape[0]
    found = set((src_rows * n + src_cols).tolist())
    real = (np.arange(n)[:, None] * n + real_index.astype(np.int64)).ravel()
    return float(np.mean([pair in found for pair in real.tolist()]))


def test_fixed_knn_graphs_recover_real_neighbours(shared_data, tmp_path):
    src = shared_data / "baby"
    convert_lattice(str(src), "baby", out=str(tmp_path))
    config, model, _, (train_data, _, _) = build(
        "MICRO", "baby", config_dict=run_config(tmp_path, device="cpu", use_gpu=False)
    )
    dataset = train_data._dataset
    assert model.knn_k == 10
    assert dataset.item_num == 7050 + 1
    recalls = {}
    for modality in ("image", "text"):
        real = np.load(src / "knn" / f"{modality}_knn10.npz")["indices"]
        assert real.shape == (7050, 10)
        adj = model.original_adj[modality]
        assert adj._nnz() == 7050 * 10
        # [PAD] (internal id 0) is nobody's neighbour
        assert (adj.coalesce().indices() > 0).all()
        recalls[modality] = graph_recall(adj, dataset, real)
    print(f"kNN-10 recall of the real Baby graphs: {recalls}")
    for modality, recall in recalls.items():
        assert recall >= MIN_RECALL, f"{modality}: recall {recall:.4f} < {MIN_RECALL}"
