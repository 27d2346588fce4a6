"""``prunekit bench``: dense against sparse CPU inference; markdown, JSON and a plot.

First the crossover density of each layer type is measured at each batch size, then
every model is timed dense (masked) and sparse (``sparsify_for_inference`` with those
crossovers, per-layer timed fallback) at every sparsity, in the same run.
"""

from __future__ import annotations

import json
import logging
import math
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

from prunekit.deploy.bench import CROSSOVER_LAYERS, measure_crossover, measure_model
from prunekit.errors import ConfigError, ResourceError
from prunekit.masks import check_sparsity
from prunekit.models import create_model, input_shape_for, list_models
from prunekit.pipelines.configs import BenchConfig
from prunekit.second_order.fisher import available_memory_bytes
from prunekit.utils.files import atomic_write_text

logger = logging.getLogger(__name__)

NOTE = (
    "Masks: global magnitude on a seeded random initialisation (for timing only the "
    "positions of the zeros matter). Dense = the masked model with PyTorch's dense "
    "kernels; sparse = `prunekit.deploy.sparsify_for_inference` with the crossovers "
    "below, each candidate layer also timed on its own input and kept dense where sparse "
    "is not faster. Wall clock, median of {repeats} repeats after {warmup} warm-up calls, "
    "dense and sparse calls alternating, fast calls repeated for at least 0.2 s, all in one "
    "run. The machine's cores are shared with other engineers' jobs: absolute times are "
    "noisy, compare the ratios. When other jobs occupy the cores, an operator split over "
    "several threads waits for a descheduled thread at each barrier, so multi-thread "
    "times then measure the scheduler more than the kernels; the 1-thread rows do not "
    "have that problem."
)


def _check(config: BenchConfig) -> None:
    unknown = sorted(set(config.models) - set(list_models()))
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; see `prunekit models`")
    for s in config.sparsities:
        check_sparsity(s)
    if not config.batch_sizes or min(config.batch_sizes) < 1:
        raise ConfigError("batch sizes must be positive integers")
    if config.repeats < 1 or config.warmup < 0:
        raise ConfigError("repeats must be >= 1 and warmup >= 0")
    bad_threads = [t for t in config.threads if isinstance(t, bool) or t < 1]
    if bad_threads:
        raise ConfigError(f"threads must be integers >= 1, got {bad_threads}")
    check_bench_memory(config.models, config.batch_sizes)


def forward_bytes_per_sample(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Bytes one sample takes in a forward pass of ``model`` at its largest layer (its
    input, its output and, for a convolution, the unfolded input a sparse kernel
    multiplies), in float32; measured on the ``meta`` device, so nothing is computed."""
    peak = math.prod(shape)

    def record(module, inputs, output) -> None:
        nonlocal peak
        size = inputs[0].numel() + output.numel() if inputs else output.numel()
        if isinstance(module, nn.Conv2d):
            kernel = module.in_channels // module.groups * math.prod(module.kernel_size)
            size += kernel * math.prod(output.shape[2:])
        peak = max(peak, size)

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.zeros((1, *shape), device="meta"))
    except (NotImplementedError, RuntimeError):
        pass  # an operation without a meta kernel: the layers seen so far
    finally:
        for handle in handles:
            handle.remove()
    return 4 * (math.prod(shape) + peak)


def check_bench_memory(models: list[str], batch_sizes: list[int]) -> None:
    """ResourceError naming the figure when the largest batch would not fit in memory
    (twice the forward estimate: the dense and the sparse model alternate)."""
    per_sample = {}
    for name in models:
        with torch.device("meta"):
            model = create_model(name, num_classes=10).eval()
        per_sample[name] = forward_bytes_per_sample(model, tuple(input_shape_for(model)))
    for layer, (build, shape) in CROSSOVER_LAYERS.items():
        with torch.device("meta"):
            per_sample[f"the {layer} crossover layer"] = forward_bytes_per_sample(
                build(), tuple(shape)
            )
    biggest = max(batch_sizes)
    what, size = max(per_sample.items(), key=lambda item: item[1])
    needed, available = 2 * biggest * size, available_memory_bytes("cpu")
    if needed > available:
        raise ResourceError(
            f"batch size {biggest} needs about {needed / 2**30:,.1f} GiB for {what} "
            f"({size / 2**20:.2f} MiB per sample), but {available / 2**30:,.1f} GiB are "
            "available: lower --batch-sizes"
        )


def _markdown(config: BenchConfig, crossovers: list[dict], timings: list[dict]) -> str:
    lines = [
        "# Dense vs sparse inference on the CPU",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, thread counts "
        f"{sorted({t['threads'] for t in timings})}.",
        "",
        NOTE.format(repeats=config.repeats, warmup=config.warmup),
        "",
        "## Crossover density per layer type",
        "",
        "Highest measured density at which the CSR kernel beat the dense one (0: it never "
        "won); the sweep stops after two losses in a row.",
        "",
        "| threads | layer | batch | crossover | dense/sparse time at each density |",
        "|---:|---|---:|---:|---|",
    ]
    for c in crossovers:
        ratios = ", ".join(
            f"{p['density']:g}: {p['dense_s'] / p['sparse_s']:.2f}×" for p in c["points"]
        )
        lines.append(
            f"| {c['threads']} | {c['layer']} | {c['batch_size']} | {c['crossover']:g} | {ratios} |"
        )
    lines += [
        "",
        "## Models",
        "",
        "Speedup = dense time / sparse time (> 1: sparse is faster). Latency in ms at "
        "batch 1, throughput in images/s at larger batches.",
        "",
        "| threads | model | sparsity | batch | dense | sparse | speedup | sparse layers |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for t in timings:
        if t["batch_size"] == 1:
            dense, sparse = f"{1e3 * t['dense_s']:.3f} ms", f"{1e3 * t['sparse_s']:.3f} ms"
        else:
            dense = f"{t['batch_size'] / t['dense_s']:,.0f} img/s"
            sparse = f"{t['batch_size'] / t['sparse_s']:,.0f} img/s"
        layers = ", ".join(t["sparse_layers"]) if t["sparse_layers"] else "none (dense)"
        if len(layers) > 60:
            layers = f"{len(t['sparse_layers'])} layers"
        lines.append(
            f"| {t['threads']} | {t['model']} | {t['sparsity']:g} | {t['batch_size']} | "
            f"{dense} | {sparse} | {t['speedup']:.2f}× | {layers} |"
        )
    return "\n".join(lines + _summary(timings)) + "\n"


def _summary(timings: list[dict]) -> list[str]:
    """Best speedup per model and batch, and every measurement where sparse lost > 5%."""
    lines = ["", "## Summary", ""]
    groups: dict[tuple, list[dict]] = {}
    for t in timings:
        groups.setdefault((t["threads"], t["batch_size"], t["model"]), []).append(t)
    for (threads, batch, model), rows in groups.items():
        best = max(rows, key=lambda u: u["speedup"])
        at_098 = [u for u in rows if u["sparsity"] == 0.98]
        extra = f", {at_098[0]['speedup']:.2f}× at 0.98" if at_098 else ""
        lines.append(
            f"- {threads} thread(s), batch {batch}, {model}: best {best['speedup']:.2f}× "
            f"at sparsity {best['sparsity']:g}{extra}"
        )
    losses = [t for t in timings if t["speedup"] < 0.95]
    lines.append("")
    if losses:
        lines.append(
            "Sparse measured slower than dense (> 5%), although each sparse layer had won "
            "its own timing: "
            + "; ".join(
                f"{t['model']} s={t['sparsity']:g} batch {t['batch_size']} "
                f"{t['threads']} thread(s) ({t['speedup']:.2f}×)"
                for t in losses
            )
            + "."
        )
    else:
        lines.append("Sparse was never measured more than 5% slower than dense.")
    return lines


def _plot(timings: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((t["threads"], t["batch_size"]) for t in timings))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (threads, batch) in zip(axes[0], panels, strict=True):
        for model in dict.fromkeys(t["model"] for t in timings):
            rows = [
                t
                for t in timings
                if t["model"] == model and t["batch_size"] == batch and t["threads"] == threads
            ]
            ax.plot(
                [t["sparsity"] for t in rows], [t["speedup"] for t in rows], marker="o", label=model
            )
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xlabel("sparsity")
        ax.set_ylabel("speedup (dense time / sparse time)")
        ax.set_title(f"batch {batch}, {threads} thread(s)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    partial = path.with_name(path.name + ".partial.png")
    fig.savefig(partial, dpi=100)
    plt.close(fig)
    partial.replace(path)


def _measure(config: BenchConfig, threads: int) -> tuple[list[dict], list[dict]]:
    """Crossovers, then model timings, at ``threads`` torch threads."""
    torch.set_num_threads(threads)
    crossovers = []
    for batch in config.batch_sizes:
        for layer in CROSSOVER_LAYERS:
            found = measure_crossover(layer, batch, repeats=config.repeats, warmup=config.warmup)
            crossovers.append({"threads": threads, **found})
            logger.info(
                "%d thread(s), %s batch %d: crossover %g", threads, layer, batch, found["crossover"]
            )
    by_batch = {
        b: {c["layer"]: c["crossover"] for c in crossovers if c["batch_size"] == b}
        for b in config.batch_sizes
    }
    timings = []
    for name in config.models:
        for timing in measure_model(
            name,
            config.sparsities,
            config.batch_sizes,
            by_batch,
            repeats=config.repeats,
            warmup=config.warmup,
            seed=config.seed,
        ):
            timings.append({"threads": threads, **asdict(timing), "speedup": timing.speedup})
            logger.info(
                "%d thread(s), %s s=%g batch %d: %.2fx",
                threads,
                name,
                timing.sparsity,
                timing.batch_size,
                timing.speedup,
            )
    return crossovers, timings


def run_bench(config: BenchConfig) -> dict:
    """Measure, then write ``deploy_cpu.{md,json,png}`` into ``config.out_dir``."""
    _check(config)
    initial = torch.get_num_threads()
    crossovers, timings = [], []
    try:
        for threads in config.threads or [initial]:
            found, timed = _measure(config, threads)
            crossovers += found
            timings += timed
    finally:
        torch.set_num_threads(initial)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": asdict(config),
        "torch": torch.__version__,
        "note": NOTE.format(repeats=config.repeats, warmup=config.warmup),
        "crossovers": crossovers,
        "timings": timings,
    }
    atomic_write_text(out / "deploy_cpu.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(out / "deploy_cpu.md", _markdown(config, crossovers, timings))
    _plot(timings, out / "deploy_cpu.png")
    best = max(timings, key=lambda t: t["speedup"]) if timings else None
    return {"out_dir": str(out), "best": best}


COMMAND = {
    "name": "bench",
    "help": "time dense vs sparse CPU inference over models and sparsities",
    "description": "Measure the crossover density of Linear and Conv2d layers, then the "
    "latency (batch 1) and throughput (larger batches) of each model dense and sparse at "
    "each sparsity; writes deploy_cpu.md, deploy_cpu.json and deploy_cpu.png.",
    "config_class": BenchConfig,
    "run": run_bench,
}
