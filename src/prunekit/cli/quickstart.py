"""``prunekit quickstart``: the README's main job in one command.

Four steps, each exactly what its own command does with the committed config:

1. ``prunekit prune --config configs/quickstart_oneshot.yaml``: one-shot pruning of the
   CBS paper's trained MLPNet with magnitude, WoodFisher and CBS at 50-98% sparsity;
2. ``prunekit prune --config configs/quickstart_multistage.yaml``: CBS in stages, into
   step 1's run folder;
3. ``prunekit report --run-dir`` that folder: both side by side;
4. ``prunekit prune-init --config configs/quickstart_init.yaml``: SNIP, GraSP and
   random at initialization on LeNet-5-Caffe, then training.

Every config is read and checked before step 1 starts, so a mistake in the last one
does not surface after minutes of work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunekit.cli.config import read_yaml, resolve_config
from prunekit.errors import ConfigError
from prunekit.utils.settings import setting

STEPS = ("oneshot", "multistage", "report", "init")


@dataclass
class QuickstartConfig:
    oneshot: str = setting(
        "configs/quickstart_oneshot.yaml",
        "step oneshot, `prunekit prune`: the one-shot sweep (magnitude, WoodFisher, CBS)",
    )
    multistage: str = setting(
        "configs/quickstart_multistage.yaml",
        "step multistage, `prunekit prune`: L0 in stages (into the one-shot run folder)",
    )
    init: str = setting(
        "configs/quickstart_init.yaml",
        "step init, `prunekit prune-init`: pruning at initialization, then training",
    )
    steps: list[str] = setting(
        list(STEPS),
        "the steps to run, in this order: oneshot, multistage, report (of the one-shot run "
        "folder), init",
    )


def run_quickstart(config: QuickstartConfig) -> dict:
    """Run the chosen steps in order; returns what each returned."""
    from prunekit.pipelines.configs import OneShotConfig, PruneInitConfig
    from prunekit.pipelines.oneshot import run_oneshot
    from prunekit.pipelines.prune_init import run_prune_init
    from prunekit.pipelines.report import ReportConfig, run_report

    unknown = [s for s in config.steps if s not in STEPS]
    if unknown or not config.steps:
        raise ConfigError(f"steps must be some of {', '.join(STEPS)}, got {config.steps}")
    steps = [s for s in STEPS if s in config.steps]
    # every config read and checked before any work
    oneshot = _read(OneShotConfig, config.oneshot)
    configs = {
        "oneshot": oneshot,
        "multistage": _read(OneShotConfig, config.multistage) if "multistage" in steps else None,
        "init": _read(PruneInitConfig, config.init) if "init" in steps else None,
    }
    if configs["multistage"] is not None and configs["multistage"].run_dir != oneshot.run_dir:
        raise ConfigError(
            f"{config.multistage} must write into the one-shot run folder {oneshot.run_dir} "
            f"(run_dir: {configs['multistage'].run_dir}) for the report to show both"
        )
    runs = {
        "oneshot": lambda: run_oneshot(configs["oneshot"]),
        "multistage": lambda: run_oneshot(configs["multistage"]),
        "report": lambda: run_report(ReportConfig(run_dir=oneshot.run_dir)),
        "init": lambda: run_prune_init(configs["init"]),
    }
    out = {}
    for number, step in enumerate(steps, 1):
        print(f"\n== prunekit quickstart, step {number}/{len(steps)}: {_describe(step, config)}\n")
        out[step] = runs[step]()
    return out


def _read(cls: type, path: str):
    config = resolve_config(cls, read_yaml(path), {})
    if not config.run_dir:
        raise ConfigError(f"{path} must name its run_dir")
    return config


def _describe(step: str, config: QuickstartConfig) -> str:
    if step == "report":
        return f"prunekit report --run-dir (the run folder of {config.oneshot})"
    command = "prune-init" if step == "init" else "prune"
    return f"prunekit {command} --config {Path(getattr(config, step))}"


COMMAND = {
    "name": "quickstart",
    "help": "the README's main job: one-shot and multi-stage pruning, report, pruning at init",
    "description": "Run the README's main job on real MNIST (a few minutes on 2 cores): "
    "prune --config configs/quickstart_oneshot.yaml, prune --config "
    "configs/quickstart_multistage.yaml, report of that run folder, prune-init --config "
    "configs/quickstart_init.yaml. Run from the repository's root (the configs' paths "
    "are relative to it).",
    "config_class": QuickstartConfig,
    "run": run_quickstart,
}
