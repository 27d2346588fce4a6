"""Accuracy against sparsity, one line per (model, method), saved as PNG.

The sparsity axis is linear (``x_axis="sparsity"``) or the density 1 − s on a log
axis (``"density-log"``), which spreads 0.9, 0.95 and 0.98 (densities 0.1, 0.05, 0.02)
as far apart as 0.5 and 0.9 instead of cramming them into the last tenth; sparsity
still grows to the right and the ticks are labelled with the sparsities run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from prunekit.errors import ConfigError
from prunekit.reports.tables import summarise

X_AXES = ("sparsity", "density-log")


def plot_accuracy_vs_sparsity(
    records: Iterable[Mapping],
    path: str | Path,
    metric: str = "top1",
    title: str = "",
    x_axis: str = "sparsity",
) -> Path:
    """Mean ``metric`` over seeds with a ±std band against the sparsity, on a linear
    axis or (``x_axis="density-log"``) as the density 1 − s on an inverted log axis;
    written atomically to ``path``."""
    if x_axis not in X_AXES:
        raise ConfigError(f"x_axis must be one of {', '.join(X_AXES)}, got {x_axis!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prunekit.utils.files import atomic_write

    summary = summarise(records, metric)
    density = x_axis == "density-log"
    fig, ax = plt.subplots(figsize=(6, 4))
    for (model, method), by_s in summary.items():
        sparsities = sorted(by_s)
        xs = [1.0 - s for s in sparsities] if density else sparsities
        means = [by_s[s][0] for s in sparsities]
        stds = [by_s[s][1] for s in sparsities]
        label = f"{model} {method}".strip()
        ax.plot(xs, means, marker="o", label=label)
        ax.fill_between(
            xs,
            [m - s for m, s in zip(means, stds, strict=True)],
            [m + s for m, s in zip(means, stds, strict=True)],
            alpha=0.2,
        )
    if density:
        _density_axis(ax, sorted({s for by_s in summary.values() for s in by_s}))
    else:
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


def _density_axis(ax, sparsities: list[float]) -> None:
    """The density 1 − s on a log axis, inverted so that sparsity grows to the right,
    ticks at the sparsities run (labelled with them)."""
    ticks = [1.0 - s for s in sparsities if s < 1.0]
    if len(ticks) == 1:  # one point: a range around it (a log axis cannot span nothing)
        ax.set_xlim(ticks[0] * 2, ticks[0] / 2)
    ax.set_xscale("log")
    if len(ticks) != 1:
        ax.invert_xaxis()
    ax.minorticks_off()
    ax.set_xticks(ticks, [f"{s:g}" for s in sparsities if s < 1.0], fontsize=8)
    ax.set_xlabel("sparsity (axis: density 1 − s, log scale)")


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
