"""Readable result tables for the terminal (best-valid and test metrics side by side)."""

DEFAULT_KEYS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@10", "precision@20")


def metrics_table(result, keys=DEFAULT_KEYS):
    """A plain-text table: one row per metric, columns ``best valid`` and ``test``."""
    valid = result.get("best_valid_result") or {}
    test = result.get("test_result") or {}
    keys = [k for k in keys if k in valid or k in test]
    width = max([len("metric")] + [len(k) for k in keys])
    lines = [f"{'metric':<{width}}  {'best valid':>10}  {'test':>10}", f"{'-' * width}  {'-' * 10}  {'-' * 10}"]
    for key in keys:
        v = f"{valid[key]:.4f}" if key in valid else "-"
        t = f"{test[key]:.4f}" if key in test else "-"
        lines.append(f"{key:<{width}}  {v:>10}  {t:>10}")
    return "\n".join(lines)
