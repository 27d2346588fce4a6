"""Every command under ``torchrun --standalone --nproc_per_node 2 -m prunekit`` (gloo on
CPU): the same masks as one process (checksums), the same one-shot results, files
written once (by rank 0), and a checkpoint written under DDP that loads in one process
and resumes under DDP."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

pytestmark = [
    pytest.mark.skipif(not dist.is_gloo_available(), reason="needs gloo"),
    pytest.mark.skipif(shutil.which("torchrun") is None, reason="needs torchrun"),
]
DATA = [
    "--dataset",
    "synthetic",
    "--dataset-kwargs",
    "{input_shape: [1, 28, 28], num_samples: 400}",
]


def prunekit(*argv, ranks=1, cwd):
    launcher = (
        ["torchrun", "--standalone", "--nproc_per_node", str(ranks), "-m", "prunekit"]
        if ranks > 1
        else [sys.executable, "-m", "prunekit"]
    )
    done = subprocess.run(
        [*launcher, *map(str, argv), "--no-progress", "--threads", "1"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return done


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def test_prune_and_prune_init_under_torchrun_match_one_process(tmp_path):
    torch.manual_seed(0)
    from prunekit.models import create_model

    torch.save(create_model("mlpnet").state_dict(), tmp_path / "mlpnet.pt")
    oneshot = ["prune", "--model", "mlpnet", *DATA, "--checkpoint", tmp_path / "mlpnet.pt",
               "--methods", "woodfisher", "cbs", "--sparsities", "0.9", "--fisher-samples", "80",
               "--cbs-rmp-trials", "3"]  # fmt: skip
    init = ["prune-init", "--model", "lenet_300_100", *DATA, "--methods", "snip", "grasp",
            "--sparsities", "0.9", "--epochs", "3", "--batch-size", "50",
            "--samples-per-class", "4"]  # fmt: skip
    for name, argv in (("oneshot", oneshot), ("init", init)):
        prunekit(*argv, "--run-dir", tmp_path / f"{name}-1", cwd=tmp_path)
        done = prunekit(*argv, "--run-dir", tmp_path / f"{name}-2", ranks=2, cwd=tmp_path)
        assert done.stdout.count("| method |") >= 1  # the table is printed once, by rank 0
        alone, ddp = records(tmp_path / f"{name}-1"), records(tmp_path / f"{name}-2")
        assert [r["mask_checksum"] for r in alone] == [r["mask_checksum"] for r in ddp]
        if name == "oneshot":  # no training: the same numbers
            for a, b in zip(alone, ddp, strict=True):
                assert a["top1"] == b["top1"] and a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        else:  # same global batch, another sample order: close, not equal
            for a, b in zip(alone, ddp, strict=True):
                assert abs(a["top1"] - b["top1"]) < 5, (a["top1"], b["top1"])


def test_ddp_checkpoint_loads_alone_and_resumes_under_ddp(tmp_path):
    train = ["train", "--model", "lenet_300_100", *DATA, "--batch-size", "50",
             "--run-dir", tmp_path / "run"]  # fmt: skip
    prunekit(*train, "--epochs", "1", ranks=2, cwd=tmp_path)
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    done = prunekit("eval", "--model", "lenet_300_100", *DATA,
                    "--checkpoint", tmp_path / "run" / "checkpoint.pt", cwd=tmp_path)  # fmt: skip
    assert json.loads(done.stdout)["top1"] >= 0
    prunekit(*train, "--epochs", "2", "--resume", ranks=2, cwd=tmp_path)
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2]  # written once per epoch
