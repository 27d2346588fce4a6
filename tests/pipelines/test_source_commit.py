"""Every run records the prunekit commit it ran from, when it runs from a checkout."""

import subprocess
from pathlib import Path

import prunekit
from prunekit.pipelines import run_folder


def test_the_commit_is_the_checkouts_head_or_absent():
    package = Path(prunekit.__file__).resolve().parent
    head = subprocess.run(
        ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    commit = run_folder.source_commit.__wrapped__()
    versions = run_folder.library_versions()
    if head.returncode != 0:  # an installed copy or no git: nothing to record
        assert commit is None and "prunekit_commit" not in versions
    else:
        assert commit.split("+")[0] == head.stdout.strip()
        assert commit in (head.stdout.strip(), head.stdout.strip() + "+modified")


def test_no_git_is_no_commit_and_no_error(monkeypatch):
    def missing(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(run_folder.subprocess, "run", missing)
    assert run_folder.source_commit.__wrapped__() is None
