"""Downloading MNIST and CIFAR-10/100 from their official addresses, with checksums.

Every file is written to a temporary file next to its destination, checked, then
renamed into place, so an interrupted or corrupt download never leaves a file with
the final name.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prunekit.data.cifar import CIFAR10_FOLDER, CIFAR100_FOLDER
from prunekit.data.paths import resolve_data_root
from prunekit.errors import ConfigError, PrunekitError

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# file name → (md5 of the official .gz, md5 of the uncompressed IDX file). Downloads are
# checked on the uncompressed content, so a mirror that recompressed the files passes.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "6bbc9ace898e44ae57da46a324031adb",
    ),
    "train-labels-idx1-ubyte.gz": (
        "d53e105ee54ea40749a09fcbcd1e9432",
        "a25bea736e30d166cdddb491f175f624",
    ),
    "t10k-images-idx3-ubyte.gz": (
        "9fb629c4189551a2d022fa330f9573f3",
        "2646ac647ad5339dbf082846283269ea",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "ec29112dd5afa0611ce80d1b7f02629c",
        "27ae3e4e09519cfbb04c329615203637",
    ),
}

# name → (url, md5 of the archive, folder the archive extracts to)
CIFAR_ARCHIVES = {
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        CIFAR10_FOLDER,
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        CIFAR100_FOLDER,
    ),
}

_CHUNK = 1 << 20


def md5sum(path: str | os.PathLike[str], decompress: bool = False) -> str:
    """Hex md5 of the file at ``path`` (of its gunzipped content when ``decompress``)."""
    opener = gzip.open if decompress else open
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with opener(path, "rb") as handle:
            while block := handle.read(_CHUNK):
                digest.update(block)
    except (OSError, EOFError) as exc:
        raise PrunekitError(f"cannot read {path} for its checksum: {exc}") from exc
    return digest.hexdigest()


def check_md5(path: str | os.PathLike[str], expected: str, decompress: bool = False) -> bool:
    """Whether ``path`` exists and its md5 (see :func:`md5sum`) is ``expected``."""
    if not Path(path).is_file():
        return False
    try:
        return md5sum(path, decompress) == expected.lower()
    except PrunekitError:
        return False


def download_url(
    url: str,
    destination: str | os.PathLike[str],
    md5: str | None = None,
    md5_of_decompressed: bool = False,
    timeout: float = 60.0,
    opener: Callable[..., object] = urllib.request.urlopen,
) -> Path:
    """Fetch ``url`` into ``destination`` atomically: the bytes go to a temporary file in
    the same folder, which is checked against ``md5`` (of the gunzipped content when
    ``md5_of_decompressed``) and only then renamed. On failure nothing is left behind
    and :class:`PrunekitError` is raised. ``opener`` exists so tests need no network.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with opener(url, timeout=timeout) as response:  # type: ignore[attr-defined]
                    shutil.copyfileobj(response, out, _CHUNK)
            except (urllib.error.URLError, OSError) as exc:
                raise PrunekitError(f"download of {url} failed: {exc}") from exc
        if md5 is not None:
            actual = md5sum(temp, decompress=md5_of_decompressed)
            if actual != md5.lower():
                raise PrunekitError(
                    f"checksum mismatch for {url}: md5 {actual}, expected {md5} "
                    "(corrupt or changed file; nothing was saved)"
                )
        os.replace(temp, destination)
    finally:
        temp.unlink(missing_ok=True)
    return destination


def _is_within(base: Path, target: Path) -> bool:
    base, target = base.resolve(), target.resolve()
    return target == base or base in target.parents


def _move_into(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``; folders are merged, files replaced."""
    if source.is_dir() and not source.is_symlink():
        target.mkdir(parents=True, exist_ok=True)
        for child in source.iterdir():
            _move_into(child, target / child.name)
    else:
        os.replace(source, target)


def extract_tar(archive: str | os.PathLike[str], destination: str | os.PathLike[str]) -> Path:
    """Extract a (gzipped) tar ``archive`` into ``destination``.

    Members that would land outside ``destination`` (absolute paths, ``..``, links
    pointing out) and devices are refused. Extraction goes to a temporary folder
    first, then is moved into place.
    """
    archive, destination = Path(archive), Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=destination))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar.getmembers():
                    if not _is_within(staging, staging / member.name) or not (
                        member.isfile() or member.isdir()
                    ):
                        raise PrunekitError(
                            f"refusing to extract {member.name!r} from {archive}: "
                            "only plain files and folders inside the archive's own folder"
                        )
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise PrunekitError(f"cannot extract {archive}: {exc}") from exc
        for child in staging.iterdir():
            _move_into(child, destination / child.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def download_mnist(folder: str | os.PathLike[str]) -> Path:
    """Put the four gzipped MNIST files into ``folder``, trying each mirror in turn.
    Files already there with the right content are kept."""
    folder = Path(folder)
    for name, (_, content_md5) in MNIST_MD5.items():
        target = folder / name
        if check_md5(target, content_md5, decompress=True):
            continue
        errors = []
        for mirror in MNIST_MIRRORS:
            try:
                download_url(mirror + name, target, content_md5, md5_of_decompressed=True)
                break
            except PrunekitError as exc:
                errors.append(str(exc))
        else:
            raise PrunekitError(f"could not download {name}: " + "; ".join(errors))
    return folder


def download_cifar(name: str, root: str | os.PathLike[str]) -> Path:
    """Download and extract CIFAR archive ``name`` ('cifar10' or 'cifar100') into
    ``root``; returns the extracted folder. The archive is kept next to it, and reused
    when its checksum matches."""
    if name not in CIFAR_ARCHIVES:
        raise ConfigError(f"no CIFAR archive named {name!r}; choose from {sorted(CIFAR_ARCHIVES)}")
    url, md5, folder_name = CIFAR_ARCHIVES[name]
    root = Path(root)
    archive = root / url.rsplit("/", 1)[1]
    if not check_md5(archive, md5):
        download_url(url, archive, md5)
    extract_tar(archive, root)
    return root / folder_name


def download_dataset(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Download dataset ``name`` into the data directory (``root``, else
    ``$PRUNEKIT_DATA``, else ``./data``): MNIST into ``<root>/mnist``, CIFAR archives
    extracted into ``<root>``. Returns the folder holding the files."""
    base = resolve_data_root(root)
    if name == "mnist":
        return download_mnist(base / "mnist")
    if name in CIFAR_ARCHIVES:
        return download_cifar(name, base)
    raise ConfigError(
        f"dataset {name!r} cannot be downloaded; downloadable: mnist, cifar10, cifar100"
    )
