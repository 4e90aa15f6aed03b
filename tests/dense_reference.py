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


# ------------------------------------------------------------------------------ MICRO, every piece dense
# Written from ``../shared/design/micro.md`` §1–7 and driven by the resolved CONFIG (not by the model's
# attributes), so a model that ignores a key disagrees with it.
def dense_ui_graph(dataset, n_users, n_items, norm, dtype=torch.float64):
    """§5: rw = D^-1 (A + I) (the reference's), sym = D^-1/2 A D^-1/2 (LightGCN's), over [users; items]."""
    a = dense_interactions(dataset, n_users, n_items).to(dtype)
    if norm == "rw":
        a = a + torch.eye(a.shape[0], dtype=dtype)
        return a / a.sum(1, keepdim=True)
    return dense_normalise(a, "sym")


def dense_backbone(cf_model, adj, xu, xi, n_layers, params=None):
    """§5: lightgcn mean(E⁰..E^L), E^{l+1} = Â E^l; ngcf LeakyReLU(GC(ÂE)) + LeakyReLU(Bi(E ⊙ ÂE)) per layer,
    L2-normalised layer outputs averaged (no dropout); mf (X_u, X_i). ``params``: the NGCF weights by name."""
    if cf_model == "mf":
        return xu, xi
    ego = torch.cat([xu, xi])
    layers = [ego]
    for layer in range(n_layers):
        side = adj @ ego
        if cf_model == "lightgcn":
            ego = side
            layers.append(ego)
        else:
            gc = side @ params[f"backbone.gc.{layer}.weight"].t() + params[f"backbone.gc.{layer}.bias"]
            bi = (ego * side) @ params[f"backbone.bi.{layer}.weight"].t() + params[f"backbone.bi.{layer}.bias"]
            ego = torch.nn.functional.leaky_relu(gc) + torch.nn.functional.leaky_relu(bi)
            layers.append(ego / ego.norm(dim=1, keepdim=True).clamp_min(1e-12))
    out = torch.stack(layers).mean(0)
    return out[: xu.shape[0]], out[xu.shape[0]:]


def dense_attention(hs, w1, b1, w2):
    """§4: β_m = softmax_m q(H_m) with q(x) = w₂ᵀ tanh(W₁x + b₁); h = Σ_m β_m H_m."""
    scores = torch.cat([torch.tanh(h @ w1.t() + b1) @ w2.t() for h in hs], dim=1)  # (N, M)
    e = torch.exp(scores - scores.max(1, keepdim=True).values)
    beta = e / e.sum(1, keepdim=True)
    return sum(beta[:, j: j + 1] * h for j, h in enumerate(hs))


def dense_grace(z1, z2, tau):
    """§7: ℓ_i = −log(e^{c(z1_i,z2_i)/τ} / (Σ_{j≠i} e^{c(z1_i,z1_j)/τ} + Σ_j e^{c(z1_i,z2_j)/τ})), mean over i."""
    n1, n2 = z1.norm(dim=1), z2.norm(dim=1)
    c11 = (z1 @ z1.t()) / (n1[:, None] * n1[None, :])
    c12 = (z1 @ z2.t()) / (n1[:, None] * n2[None, :])
    off_diagonal = ~torch.eye(z1.shape[0], dtype=torch.bool)
    denominator = (torch.exp(c11 / tau) * off_diagonal).sum(1) + torch.exp(c12 / tau).sum(1)
    return (torch.log(denominator) - c12.diagonal() / tau).mean()


def dense_micro(config, dataset, params, raw_features, batch=None, original=None):
    r"""MICRO from its formulas, with autograd through ``params`` (``{name: tensor}`` as ``named_parameters``).

    ``raw_features``: ``{modality: E_m}`` the original graphs S̃_m are built from (§1); ``original``: those
    graphs already built (dense), if given. Returns ``{"users", "items", "hs", "h", "adj"}`` and, with a
    ``batch`` (user_id / item_id / neg_item_id tensors), ``"bpr"``, ``"emb"`` and ``"cl"`` (β·Σ_m L_C).
    """
    k, norm, lam, layers = config["knn_k"], config["knn_norm"], config["lambda_coeff"], config["n_item_layers"]
    dtype = params["item_embedding.weight"].dtype
    adj, hs = {}, []
    xi = params["item_embedding.weight"]
    for m, raw in raw_features.items():
        e = params[f"features.{m}.weight"]
        f = e @ params[f"projections.{m}.weight"].t() + params[f"projections.{m}.bias"]  # F_m (§2)
        learned = padded(dense_knn(f[1:], k, norm))
        s = original[m] if original is not None else padded(dense_knn(raw[1:].to(dtype), k, norm))
        adj[m] = (1 - lam) * learned + lam * s
        h_m = xi
        for _ in range(layers):  # §3: H_m = A_m^L X_i
            h_m = adj[m] @ h_m
        hs.append(h_m)
    h = dense_attention(hs, params["query.0.weight"], params["query.0.bias"], params["query.2.weight"])
    n_users, n_items = params["user_embedding.weight"].shape[0], xi.shape[0]
    ui = dense_ui_graph(dataset, n_users, n_items, config["ui_norm"], dtype)
    users, items_cf = dense_backbone(config["cf_model"], ui, params["user_embedding.weight"], xi,
                                     len(config["weight_size"]), params)
    items = items_cf + h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)  # §6
    out = {"users": users, "items": items, "hs": hs, "h": h, "adj": adj}
    if batch is not None:  # §7
        u, pos, neg = users[batch["user_id"]], items[batch["item_id"]], items[batch["neg_item_id"]]
        out["bpr"] = -torch.nn.functional.logsigmoid((u * pos).sum(1) - (u * neg).sum(1)).mean()
        out["emb"] = config["reg_weight"] * 0.5 * (u.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / u.shape[0]
        out["cl"] = config["loss_ratio"] * sum(dense_grace(h_m[1:], h[1:], config["temperature"]) for h_m in hs)
    return out


def dense_lattice(config, dataset, params, raw_features, batch=None):
    r"""LATTICE (§9) from its formulas and the resolved CONFIG: α = softmax(w);
    A = (1 − λ)·norm(Σ_m α_m kNN(F_m)) + λ·Σ_m α_m norm(kNN(E_m)); h = A^L X_i; ĩ = i_CF + h/‖h‖;
    loss = BPR + L_emb. Returns ``{"users", "items", "h", "adj"}`` (+ ``"bpr"``, ``"emb"`` with a ``batch``)."""
    k, norm, lam = config["knn_k"], config["knn_norm"], config["lambda_coeff"]
    dtype = params["item_embedding.weight"].dtype
    alpha = torch.softmax(params["modal_weight"], dim=0)
    learned, original = 0, 0
    for j, (m, raw) in enumerate(raw_features.items()):
        f = params[f"features.{m}.weight"] @ params[f"projections.{m}.weight"].t() + params[f"projections.{m}.bias"]
        learned = learned + alpha[j] * dense_knn(f[1:], k, "none")  # unnormalised kNN graphs summed ...
        original = original + alpha[j] * dense_knn(raw[1:].to(dtype), k, norm)
    adj = padded((1 - lam) * dense_normalise(learned, norm) + lam * original)  # ... normalised once
    xi = params["item_embedding.weight"]
    h = xi
    for _ in range(config["n_item_layers"]):
        h = adj @ h
    n_users, n_items = params["user_embedding.weight"].shape[0], xi.shape[0]
    ui = dense_ui_graph(dataset, n_users, n_items, config["ui_norm"], dtype)
    users, items_cf = dense_backbone(config["cf_model"], ui, params["user_embedding.weight"], xi,
                                     len(config["weight_size"]), params)
    items = items_cf + h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
    out = {"users": users, "items": items, "h": h, "adj": adj}
    if batch is not None:
        u, pos, neg = users[batch["user_id"]], items[batch["item_id"]], items[batch["neg_item_id"]]
        out["bpr"] = -torch.nn.functional.logsigmoid((u * pos).sum(1) - (u * neg).sum(1)).mean()
        out["emb"] = config["reg_weight"] * 0.5 * (u.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / u.shape[0]
    return out
