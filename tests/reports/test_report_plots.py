"""The accuracy-against-sparsity plot: the density 1 − s on an inverted log axis (the
default of one-shot reports) spreads 0.9 / 0.95 / 0.98; the linear axis stays for the
others and on request."""

import json

import matplotlib.pyplot as plt
import pytest

from prunekit.errors import ConfigError
from prunekit.pipelines.report import ReportConfig, run_report
from prunekit.reports.plots import plot_accuracy_vs_sparsity

SPARSITIES = [0.5, 0.9, 0.95, 0.98]


def records(extra=None):
    base = {"model": "mlpnet", "method": "cbs", "seed": 0, **(extra or {})}
    return [{**base, "sparsity": s, "top1": 90 - 10 * s} for s in SPARSITIES]


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions draw, kept open for inspection."""
    kept, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    yield kept
    for fig in kept:
        close(fig)


def test_density_log_axis_spreads_the_high_sparsities(tmp_path, figures):
    plot_accuracy_vs_sparsity(records(), tmp_path / "a.png", x_axis="density-log")
    assert (tmp_path / "a.png").stat().st_size > 0
    ax = figures[-1].axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()  # sparsity grows to the right
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == pytest.approx([1 - s for s in SPARSITIES])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "0.9", "0.95", "0.98"]
    # on screen, 0.9 → 0.98 takes as much room as 0.5 → 0.9 (densities / 5 each; on a
    # linear axis a fifth of it)
    x = ax.transData.transform([(1 - s, 0) for s in SPARSITIES])[:, 0]
    assert x[3] - x[1] == pytest.approx(x[1] - x[0]) and x[1] - x[0] > 0


def test_linear_axis_on_request(tmp_path, figures):
    plot_accuracy_vs_sparsity(records(), tmp_path / "b.png", x_axis="sparsity")
    ax = figures[-1].axes[0]
    assert ax.get_xscale() == "linear" and not ax.xaxis_inverted()
    assert list(ax.get_lines()[0].get_xdata()) == SPARSITIES
    with pytest.raises(ConfigError, match="x_axis"):
        plot_accuracy_vs_sparsity(records(), tmp_path / "c.png", x_axis="log")


def write_run(root, command, extra=None):
    for record in records(extra):
        cell = root / record["method"] / f"sparsity-{record['sparsity']}" / "seed-0"
        cell.mkdir(parents=True)
        (cell / "result.json").write_text(json.dumps(record))
    if command is not None:
        (root / "config.json").write_text(json.dumps({"command": command, "config": {}}))
    return root


@pytest.mark.parametrize(
    "command, extra, expected",
    [
        ("prune", None, "density-log"),
        ("prune-init", None, "sparsity"),
        (None, {"dense_top1": 93.0}, "density-log"),  # cells copied together: the records say
        (None, None, "sparsity"),
    ],
)
def test_report_default_axis(tmp_path, figures, command, extra, expected):
    root = write_run(tmp_path / "run", command, extra)
    out = run_report(ReportConfig(run_dir=str(root)))
    assert out["x_axis"] == expected and (root / "report.png").exists()
    assert figures[0].axes[0].get_xscale() == ("log" if expected == "density-log" else "linear")


def test_report_axis_option_overrides_the_default(tmp_path, figures):
    root = write_run(tmp_path / "run", "prune")
    assert run_report(ReportConfig(run_dir=str(root), x_axis="sparsity"))["x_axis"] == "sparsity"
    assert figures[0].axes[0].get_xscale() == "linear"
