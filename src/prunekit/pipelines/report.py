"""``prunekit report``: the tables and plot of a run folder from its finished results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from prunekit.pipelines.configs import opt
from prunekit.reports.collect import (
    collect_results,
    not_finite_fields,
    numeric_metrics,
    run_reference,
)
from prunekit.reports.plots import X_AXES, plot_accuracy_vs_sparsity, plot_accuracy_vs_stages
from prunekit.reports.tables import results_table
from prunekit.utils.files import atomic_write_text


@dataclass
class ReportConfig:
    run_dir: str | None = opt(None, "a run folder of prune or prune-init")
    metric: str = opt("top1", "metric to tabulate (top1, loss, finetuned_top1, ...)")
    x_axis: str = opt(
        "auto",
        "report.png's horizontal axis: density-log (the density 1 - sparsity on a log axis, "
        "so that 0.9, 0.95 and 0.98 stand apart), sparsity (linear), or auto: density-log "
        "for one-shot runs (prune), sparsity for the others",
        choices=["auto", *X_AXES],
    )


def run_report(config: ReportConfig) -> dict:
    """Write ``report.md`` and ``report.png`` in the run folder and print the table."""
    from prunekit.errors import ConfigError

    if not config.run_dir:
        raise ConfigError("report needs --run-dir PATH")
    root = Path(config.run_dir)
    records = collect_results(root)
    available = numeric_metrics(records)
    if config.metric not in available:
        raise ConfigError(
            f"no result below {root} has the metric {config.metric!r}; "
            f"available: {', '.join(available)}"
        )
    table = results_table(records, metric=config.metric, reference=run_reference(root))
    seeds = sorted({r["seed"] for r in records})
    text = f"{config.metric}, mean ± std over seeds {seeds} ({len(records)} runs).\n\n{table}\n"
    validation = f"val_{config.metric}"
    if validation in available:  # the held-out training samples settings were chosen on
        text += (
            f"\n{validation}: the same cells on the --validation-size samples held out of "
            f"the training data.\n\n{results_table(records, metric=validation)}\n"
        )
    text += _not_finite_note(records)
    atomic_write_text(root / "report.md", text)
    x_axis = config.x_axis
    if x_axis == "auto":
        x_axis = "density-log" if is_oneshot_run(root, records) else "sparsity"
    plot_accuracy_vs_sparsity(records, root / "report.png", metric=config.metric, x_axis=x_axis)
    stages_plot = plot_accuracy_vs_stages(
        records, root / "report_stages.png", metrics=(config.metric, validation)
    )
    print(text)
    return {
        "run_dir": str(root),
        "runs": len(records),
        "x_axis": x_axis,
        "stages_plot": None if stages_plot is None else str(stages_plot),
    }


def is_oneshot_run(root: Path, records: list[dict]) -> bool:
    """Whether the results come from ``prunekit prune``: its ``config.json`` says so, or
    (cells copied together without it) every record has the dense model's accuracy."""
    try:
        command = json.loads((root / "config.json").read_text()).get("command")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        command = None
    if command is not None:
        return command == "prune"
    return all("dense_top1" in r for r in records)


def _not_finite_note(records: list[dict]) -> str:
    """A warning paragraph naming the cells whose results hold NaN/Inf, or ''."""
    rows = [
        f"- {r['method']}, sparsity {r['sparsity']:g}, seed {r['seed']}: {', '.join(bad)}"
        for r in records
        if (bad := not_finite_fields(r))
    ]
    if not rows:
        return ""
    return "\nWARNING: not finite (NaN/Inf) results, shown as nan/inf above:\n\n" + (
        "\n".join(rows) + "\n"
    )


COMMAND = {
    "name": "report",
    "help": "tables and plot of a run folder's finished results",
    "description": "Collect every finished result below a run folder (even of a run still "
    "going or interrupted) into report.md (test and, when held out, validation accuracy) "
    "and report.png, with published figures if the run's config has them, and "
    "report_stages.png when a sparsity was run with several stage counts.",
    "config_class": ReportConfig,
    "run": run_report,
}
