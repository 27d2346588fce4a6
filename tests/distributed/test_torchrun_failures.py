"""Failures under ``torchrun --standalone --nproc_per_node 2 -m prunekit``: rank 0 prints
what one process prints (one line) and exits with the same status; the other rank exits
quietly, so torchrun's summary names rank 0 alone and carries the message. Covered: a
mistake in the flags, a missing checkpoint, a run folder only rank 0 opens (rank 1 waits
in a barrier), a checkpoint of another model, and a failure on rank 1 only."""

import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist

pytestmark = [
    pytest.mark.skipif(not dist.is_gloo_available(), reason="needs gloo"),
    pytest.mark.skipif(shutil.which("torchrun") is None, reason="needs torchrun"),
]
TORCHRUN = ["torchrun", "--standalone", "--nproc_per_node", "2"]
PRUNE = ["prune", "--model", "mlpnet", "--dataset", "synthetic", "--dataset-kwargs",
         "{input_shape: [1, 28, 28], num_samples: 60}", "--methods", "magnitude",
         "--sparsities", "0.5", "--no-progress", "--threads", "1"]  # fmt: skip


def run(command, cwd):
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)


def prunekit_lines(stderr: str) -> list[str]:
    """What prunekit printed (torchrun's own log and summary lines start otherwise, but
    for the summary's title)."""
    lines = stderr.splitlines()
    return [x for x in lines if x.startswith(("prunekit", "usage:")) and x != "prunekit FAILED"]


def check_summary(done, message: str, code: int) -> None:
    """torchrun failed, listing rank 0 alone, with prunekit's message and status."""
    err = done.stderr
    assert done.returncode != 0
    assert f"exitcode  : {code} " in err, err[-3000:]
    assert "<NO_OTHER_FAILURES>" in err and "rank      : 1" not in err, err[-3000:]
    assert f"traceback : {message}" in err or f"  {message}" in err, err[-3000:]
    for noise in ("Connection closed", "SIGTERM", "[rank1]", "RuntimeError"):
        assert noise not in err, err[-3000:]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from prunekit.models import create_model

    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    torch.save(create_model("mlpnet").state_dict(), folder / "mlpnet.pt")
    torch.save(create_model("lenet_300_100").state_dict(), folder / "lenet.pt")
    (folder / "a-file").write_text("not a folder\n")
    return folder


CASES = {
    "bad flag": ["--checkpoint", "mlpnet.pt", "--no-such-flag", "1"],
    "missing checkpoint": ["--checkpoint", "missing.pt", "--run-dir", "run"],
    "run folder is a file": ["--checkpoint", "mlpnet.pt", "--run-dir", "a-file"],
    "checkpoint of another model": ["--checkpoint", "lenet.pt", "--run-dir", "run"],
}


@pytest.mark.parametrize("case", CASES)
def test_rank0_prints_the_one_process_message_and_status(case, checkpoints):
    argv = [*PRUNE, *CASES[case]]
    alone = run([sys.executable, "-m", "prunekit", *argv], checkpoints)
    assert alone.returncode == 2 and prunekit_lines(alone.stderr), alone.stderr
    assert "Traceback" not in alone.stderr

    done = run([*TORCHRUN, "-m", "prunekit", *argv], checkpoints)
    assert prunekit_lines(done.stderr) == alone.stderr.strip().splitlines()  # printed once
    check_summary(done, alone.stderr.strip().splitlines()[-1], 2)
    assert not (checkpoints / "run").exists() or case == "checkpoint of another model"


def test_a_failure_on_rank_1_alone_is_printed_by_rank_0(checkpoints, tmp_path):
    script = tmp_path / "rank1_fails.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            import prunekit.pipelines.oneshot as oneshot
            from prunekit.cli.main import main
            from prunekit.errors import CheckpointError

            real = oneshot.load_weights

            def load_weights(model, path):
                if os.environ["RANK"] == "1":
                    raise CheckpointError(f"rank 1 cannot read {path}")
                return real(model, path)

            oneshot.load_weights = load_weights
            sys.exit(main())
            """
        )
    )
    argv = [*PRUNE, "--checkpoint", "mlpnet.pt", "--run-dir", str(tmp_path / "run")]
    done = run([*TORCHRUN, str(script), *argv], checkpoints)
    message = "prunekit prune: error: rank 1 cannot read mlpnet.pt"
    assert prunekit_lines(done.stderr) == [message], done.stderr[-3000:]
    check_summary(done, message, 2)
