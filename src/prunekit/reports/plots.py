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


def stage_counts_by_sparsity(records: Iterable[Mapping]) -> dict[tuple, dict[int, list]]:
    """(model, base method, sparsity) → stage count → records, for the sparsities run
    with at least two stage counts (a one-stage cell has ``stages`` 1 or none)."""
    grouped: dict[tuple, dict[int, list]] = {}
    for record in records:
        key = (
            str(record.get("model", "")),
            str(record.get("base_method", record["method"])),
            round(float(record["sparsity"]), 6),
        )
        count = int(record.get("stages") or 1)
        grouped.setdefault(key, {}).setdefault(count, []).append(record)
    return {key: by_count for key, by_count in grouped.items() if len(by_count) > 1}


def plot_accuracy_vs_stages(
    records: Iterable[Mapping], path: str | Path, metrics: tuple[str, ...] = ("top1", "val_top1")
) -> Path | None:
    """Mean of each of ``metrics`` over seeds against the number of pruning stages, one
    line per (model, method, sparsity, metric); None (nothing written) when no sparsity
    was run with two stage counts or more."""
    import statistics

    grouped = stage_counts_by_sparsity(records)
    if not grouped:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prunekit.utils.files import atomic_write

    fig, ax = plt.subplots(figsize=(6, 4))
    for (model, method, sparsity), by_count in sorted(grouped.items()):
        counts = sorted(by_count)
        for metric, style in zip(metrics, ("-o", "--s"), strict=False):
            values = [[r[metric] for r in by_count[c] if r.get(metric) is not None] for c in counts]
            xs = [c for c, v in zip(counts, values, strict=True) if v]
            ys = [statistics.fmean(v) for v in values if v]
            if xs:
                name = "test" if metric == "top1" else metric
                ax.plot(xs, ys, style, label=f"{model} {method} s={sparsity:g} ({name})".strip())
    ax.set_xscale("log")
    ticks = sorted({c for by_count in grouped.values() for c in by_count})
    ax.set_xticks(ticks, [str(c) for c in ticks])
    ax.minorticks_off()
    ax.set_xlabel("pruning stages (log scale; 1 = one shot)")
    ax.set_ylabel("top-1 accuracy (%), mean over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path
