"""A training run killed with SIGKILL mid-epoch resumes to the same final weights, redoing
at most the interrupted epoch; a second run on a folder in use refuses, naming the pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from _reliability import QUICK, error_line, hashes, run_cli

import prunekit

DRIVER = Path(__file__).with_name("_train_driver.py")
SRC = str(Path(prunekit.__file__).parents[1])
# one thread in every process: sums over other thread counts round differently
FLAGS = [*QUICK, "--epochs", "3", "--lr", "0.05", "--scheduler", "step", "--threads", "1"]
BATCHES_PER_EPOCH = 2  # 40 synthetic samples, batch size 20


def start(mode: str, batch: int, run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC}
    command = [sys.executable, str(DRIVER), mode, str(batch), str(run_dir), *FLAGS]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def epochs_logged(run_dir: Path) -> list[int]:
    import json

    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path, capsys):
    reference = tmp_path / "reference"
    assert run_cli(capsys, ["train", "--run-dir", reference, *FLAGS])[0] == 0

    run_dir = tmp_path / "killed"
    child = start("kill", BATCHES_PER_EPOCH + 2, run_dir)  # the second batch of epoch 2
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 1 and epochs_logged(run_dir) == [1]  # epoch 2 was lost, only it
    (run_dir / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")  # as a kill leaves

    code, _, err = run_cli(capsys, ["train", "--run-dir", run_dir, *FLAGS, "--resume"])
    assert code == 0, err  # the dead run's lock is stale: taken over
    assert epochs_logged(run_dir) == [1, 2, 3]
    assert not list(run_dir.glob(".*.tmp"))
    final = torch.load(run_dir / "model.pt", weights_only=True)
    expected = torch.load(reference / "model.pt", weights_only=True)
    assert all(torch.equal(final[k], v) for k, v in expected.items())


def test_second_run_on_a_folder_in_use_refuses(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first = start("pause", 1, run_dir)
    while not (tmp_path / "paused").exists() and first.poll() is None:
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()[1].decode()
    written = hashes(run_dir)

    code, _, err = run_cli(capsys, ["train", "--run-dir", run_dir, *FLAGS, "--resume"])
    (tmp_path / "go").write_text("")
    _, first_err = first.communicate()
    assert code != 0
    line = error_line(err)
    assert f"in use by another prunekit run (pid {first.pid})" in line, line
    assert first.returncode == 0, first_err.decode()
    assert hashes(run_dir)["config.json"] == written["config.json"]  # the second wrote nothing
    assert epochs_logged(run_dir) == [1, 2, 3]
