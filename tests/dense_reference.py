"""Dense reference computations shared by the tests, written from the formulas of ``../shared/design/micro.md``
(graphs §1–2, convolution §3) and §9 (LATTICE): every graph is an explicit N × N matrix."""

import torch


def dense_cosine(x):
    """S_ij = x_i·x_j / (‖x_i‖‖x_j‖); 0 wherever either row is all zero."""
    norms = x.norm(dim=1)
    s = (x @ x.t()) / (norms[:, None] * norms[None, :])
    zero = (norms[:, None] == 0) | (norms[None, :] == 0)
    return torch.where(zero, torch.zeros_like(s), s)


def dense_normalise(a, norm_type):
    """sym: D^-1/2 A D^-1/2, rw: D^-1 A, none: A, with D = row sums; a row sum ≤ 0 gives weight 0."""
    d = a.sum(1)
    positive = d > 0
    safe = torch.where(positive, d, torch.ones_like(d))
    if norm_type == "sym":
        inv = torch.where(positive, safe ** -0.5, torch.zeros_like(d))
        return inv[:, None] * a * inv[None, :]
    if norm_type == "rw":
        inv = torch.where(positive, 1.0 / safe, torch.zeros_like(d))
        return inv[:, None] * a
    return a


def dense_sym(a):
    """D^-1/2 A D^-1/2 with D = row sums (a row sum ≤ 0 gives weight 0)."""
    return dense_normalise(a, "sym")


def dense_knn(x, k, norm_type="sym", index=None):
    """normalise(kNN(cos(x))): the k largest S_ij of each row (or the columns ``index`` forces), the rest 0."""
    s = dense_cosine(x)
    if index is None:
        index = s.topk(k, dim=1).indices
    a = torch.zeros_like(s).scatter(1, index, s.gather(1, index))
    return dense_normalise(a, norm_type)


def padded(a):
    """[[0, 0], [0, A]]: an (N−1)² graph embedded with an empty [PAD] row/column 0."""
    out = torch.zeros(a.shape[0] + 1, a.shape[1] + 1, dtype=a.dtype)
    out[1:, 1:] = a
    return out


def dense_interactions(dataset, n_users, n_items):
    """[[0, R], [Rᵀ, 0]]: the dense bipartite adjacency of the dataset's (training) interactions R."""
    r = torch.zeros(n_users, n_items)
    r[dataset.inter_feat[dataset.uid_field], dataset.inter_feat[dataset.iid_field]] = 1.0
    a = torch.zeros(n_users + n_items, n_users + n_items)
    a[:n_users, n_users:] = r
    a[n_users:, :n_users] = r.t()
    return a


def dense_lightgcn(dataset, xu, xi):
    """LightGCN on Â = D^-1(A+I), 2 layers: (E⁰ + ÂE⁰ + Â²E⁰) / 3, E⁰ = [xu; xi]; returns (users, items)."""
    n_users, n_items = xu.shape[0], xi.shape[0]
    a = dense_interactions(dataset, n_users, n_items) + torch.eye(n_users + n_items)
    a_hat = a / a.sum(1, keepdim=True)
    e0 = torch.cat([xu, xi])
    e1 = a_hat @ e0
    e2 = a_hat @ e1
    out = (e0 + e1 + e2) / 3
    return out[:n_users], out[n_users:]
