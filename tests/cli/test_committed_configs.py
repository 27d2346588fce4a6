"""Every committed YAML config (quickstart and reproductions) resolves against its
command's settings: no stale or misspelt option survives a refactor."""

from pathlib import Path

import pytest

from prunekit.cli.config import read_yaml, resolve_config
from prunekit.pipelines.configs import OneShotConfig, PruneInitConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml")) + sorted(
    (ROOT / "reproductions").glob("*.yaml")
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_resolves(path):
    cls = PruneInitConfig if "init" in path.name else OneShotConfig
    config = resolve_config(cls, read_yaml(path), {})
    assert config.run_dir
