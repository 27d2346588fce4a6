"""Every run records the prunekit commit it ran from, when it runs from a checkout."""

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

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


def test_an_archived_commit_is_read_only_when_git_archive_filled_it_in(tmp_path):
    assert run_folder.archived_commit(tmp_path) is None  # no file
    (tmp_path / run_folder.ARCHIVED_COMMIT_FILE).write_text("$Format:%H$\n")
    assert run_folder.archived_commit(tmp_path) is None  # a checkout's placeholder
    (tmp_path / run_folder.ARCHIVED_COMMIT_FILE).write_text("not a commit\n")
    assert run_folder.archived_commit(tmp_path) is None
    (tmp_path / run_folder.ARCHIVED_COMMIT_FILE).write_text("ab" * 20 + "\n")
    assert run_folder.archived_commit(tmp_path) == "ab" * 20


def test_an_unpacked_archive_records_its_commit_marked_as_archive(monkeypatch):
    monkeypatch.setattr(run_folder, "archived_commit", lambda package: "cd" * 20)

    def no_git(*args, **kwargs):
        raise AssertionError("git must not be asked when the archive names its commit")

    monkeypatch.setattr(run_folder.subprocess, "run", no_git)
    assert run_folder.source_commit.__wrapped__() == "cd" * 20 + "+archive"


def test_git_archive_fills_in_the_commit_of_this_checkout(tmp_path):
    package = Path(prunekit.__file__).resolve().parent
    root = subprocess.run(
        ["git", "-C", str(package), "rev-parse", "--show-toplevel"], capture_output=True, text=True
    )
    if root.returncode != 0:
        pytest.skip("not a git checkout")
    assert run_folder.archived_commit(package) is None  # checkouts ask git instead
    relative = (package / run_folder.ARCHIVED_COMMIT_FILE).relative_to(root.stdout.strip())
    archive = subprocess.run(
        ["git", "-C", root.stdout.strip(), "archive", "--format=tar", "HEAD", str(relative)],
        capture_output=True,
    )
    if archive.returncode != 0:
        pytest.skip("the file is not committed in HEAD yet")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        text = tar.extractfile(str(relative)).read().decode().strip()
    head = subprocess.run(
        ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    assert text == head.stdout.strip()
