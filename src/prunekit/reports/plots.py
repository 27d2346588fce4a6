"""Accuracy against sparsity, one line per (model, method), saved as PNG."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from prunekit.reports.tables import summarise


def plot_accuracy_vs_sparsity(
    records: Iterable[Mapping], path: str | Path, metric: str = "top1", title: str = ""
) -> Path:
    """Mean ``metric`` over seeds with a ±std band; written atomically to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prunekit.utils.files import atomic_write

    summary = summarise(records, metric)
    fig, ax = plt.subplots(figsize=(6, 4))
    for (model, method), by_s in summary.items():
        xs = sorted(by_s)
        means = [by_s[x][0] for x in xs]
        stds = [by_s[x][1] for x in xs]
        label = f"{model} {method}".strip()
        ax.plot(xs, means, marker="o", label=label)
        ax.fill_between(
            xs,
            [m - s for m, s in zip(means, stds, strict=True)],
            [m + s for m, s in zip(means, stds, strict=True)],
            alpha=0.2,
        )
    ax.set_xlabel("sparsity (fraction of prunable weights removed)")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path
