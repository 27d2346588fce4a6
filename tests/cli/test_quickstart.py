"""``prunekit quickstart``: the README's main job in one command (one-shot sweep, CBS in
stages into the same run folder, the report of both, pruning at init), here on tiny
synthetic data; every config is checked before any step runs; the defaults are the
committed quickstart configs."""

from pathlib import Path

import pytest
import torch
import yaml

from prunekit.cli.config import resolve_config
from prunekit.cli.main import main
from prunekit.cli.quickstart import QuickstartConfig

ROOT = Path(__file__).resolve().parents[2]
DATA = {"dataset": "synthetic", "dataset_kwargs": {"input_shape": [1, 28, 28], "num_samples": 100},
        "progress": False, "threads": 1}  # fmt: skip


@pytest.fixture
def configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the configs' paths are relative, as in the README
    torch.manual_seed(0)
    from prunekit.models import create_model

    torch.save(create_model("mlpnet").state_dict(), tmp_path / "mlpnet.pt")
    oneshot = {"model": "mlpnet", **DATA, "checkpoint": "mlpnet.pt", "fisher_samples": 20,
               "cbs_rmp_trials": 2, "run_dir": "runs/quickstart/oneshot"}  # fmt: skip
    files = {
        "oneshot": {**oneshot, "methods": ["magnitude", "cbs"], "sparsities": [0.5, 0.9]},
        "multistage": {**oneshot, "methods": ["cbs"], "sparsities": [0.9], "stages_count": 2},
        "init": {"model": "lenet_300_100", **DATA, "methods": ["snip", "random"],
                 "sparsities": [0.9], "epochs": 1, "batch_size": 50, "samples_per_class": 2,
                 "run_dir": "runs/quickstart/init"},
    }  # fmt: skip
    for name, values in files.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(values))
    return ["--oneshot", "oneshot.yaml", "--multistage", "multistage.yaml", "--init", "init.yaml"]


def results(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder).parts[:2]) for p in folder.rglob("result.json"))


def test_quickstart_runs_every_step_in_order(configs, tmp_path, capsys):
    assert main(["quickstart", *configs]) == 0
    out = capsys.readouterr().out
    steps = [out.index(f"step {n}/4") for n in range(1, 5)]
    assert steps == sorted(steps)
    oneshot = tmp_path / "runs" / "quickstart" / "oneshot"
    assert results(oneshot) == sorted(
        ["('magnitude', 'sparsity-0.5')", "('magnitude', 'sparsity-0.9')",
         "('cbs', 'sparsity-0.5')", "('cbs', 'sparsity-0.9')", "('cbs', 'sparsity-0.9')"]
    )  # fmt: skip
    report = (oneshot / "report.md").read_text()
    assert "cbs, 2 stages" in report and "magnitude" in report  # side by side
    assert (oneshot / "report.png").exists()
    assert len(results(tmp_path / "runs" / "quickstart" / "init")) == 2


def test_a_bad_config_stops_before_any_step(configs, tmp_path, capsys):
    (tmp_path / "init.yaml").write_text("model: lenet_300_100\nepochz: 3\nrun_dir: x\n")
    assert main(["quickstart", *configs]) == 2
    err = capsys.readouterr().err
    assert err.startswith("prunekit quickstart: error: unknown option(s) ['epochz']")
    assert not (tmp_path / "runs").exists()


def test_steps_choose_a_part(configs, tmp_path):
    assert main(["quickstart", *configs, "--steps", "init"]) == 0
    assert not (tmp_path / "runs" / "quickstart" / "oneshot").exists()
    assert len(results(tmp_path / "runs" / "quickstart" / "init")) == 2
    assert main(["quickstart", *configs, "--steps", "plot"]) == 2


def test_defaults_are_the_committed_quickstart_configs(monkeypatch):
    monkeypatch.chdir(ROOT)
    config = resolve_config(QuickstartConfig, {}, {})
    for path in (config.oneshot, config.multistage, config.init):
        assert (ROOT / path).is_file(), path
    oneshot, multistage = (yaml.safe_load((ROOT / p).read_text())
                           for p in (config.oneshot, config.multistage))  # fmt: skip
    assert oneshot["run_dir"] == multistage["run_dir"]  # the report shows both
