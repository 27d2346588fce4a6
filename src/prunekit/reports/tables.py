"""Markdown tables of results: one row per (model, method), one column per sparsity.

A result record is a dict with at least ``method``, ``sparsity``, ``seed`` and the
metric named in the call (``top1`` by default); ``model`` is optional.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping


def summarise(
    records: Iterable[Mapping], metric: str = "top1"
) -> dict[tuple[str, str], dict[float, tuple[float, float, int]]]:
    """(model, method) → sparsity → (mean, std over seeds, number of seeds)."""
    grouped: dict[tuple[str, str], dict[float, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for record in records:
        if record.get(metric) is None:
            continue
        key = (str(record.get("model", "")), str(record["method"]))
        grouped[key][round(float(record["sparsity"]), 6)].append(float(record[metric]))
    out: dict[tuple[str, str], dict[float, tuple[float, float, int]]] = {}
    for key, by_sparsity in grouped.items():
        out[key] = {}
        for sparsity, values in sorted(by_sparsity.items()):
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out[key][sparsity] = (statistics.fmean(values), std, len(values))
    return out


def results_table(
    records: Iterable[Mapping],
    metric: str = "top1",
    reference: Mapping[str, Mapping[float, float]] | None = None,
    digits: int = 2,
) -> str:
    """A markdown table of ``metric`` mean ± std over seeds.

    ``reference`` adds rows of published figures: label → sparsity → value.
    """
    summary = summarise(records, metric)
    sparsities = sorted({s for by_s in summary.values() for s in by_s})
    if reference:
        sparsities = sorted(
            set(sparsities) | {round(float(s), 6) for r in reference.values() for s in r}
        )
    show_model = len({model for model, _ in summary}) > 1 or any(model for model, _ in summary)
    head = (["model"] if show_model else []) + ["method"] + [f"{s:g}" for s in sparsities]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, method), by_s in summary.items():
        cells = []
        for s in sparsities:
            if s in by_s:
                mean, std, n = by_s[s]
                cells.append(
                    f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"
                )
            else:
                cells.append("")
        lines.append("| " + " | ".join(([model] if show_model else []) + [method] + cells) + " |")
    for label, values in (reference or {}).items():
        by_s = {round(float(s), 6): v for s, v in values.items()}
        cells = [f"{by_s[s]:.{digits}f}" if s in by_s else "" for s in sparsities]
        lines.append("| " + " | ".join(([""] if show_model else []) + [label] + cells) + " |")
    return "\n".join(lines)
