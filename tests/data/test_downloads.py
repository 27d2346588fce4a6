import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from prunekit.data import download
from prunekit.errors import ConfigError, PrunekitError

REAL_MNIST = Path("/work/shared/data/mnist")


class _Response(io.BytesIO):
    pass


def _opener(payload: bytes):
    def opener(url, timeout):
        return _Response(payload)

    return opener


def test_md5_of_file_and_content(tmp_path):
    path = tmp_path / "a.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"hello")
    assert download.md5sum(path, decompress=True) == hashlib.md5(b"hello").hexdigest()
    assert download.check_md5(path, hashlib.md5(path.read_bytes()).hexdigest())
    assert not download.check_md5(path, "0" * 32)
    assert not download.check_md5(tmp_path / "absent", "0" * 32)


def test_download_url_verifies_then_renames(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    good = hashlib.md5(b"payload").hexdigest()
    download.download_url("http://x/file.bin", target, good, opener=_opener(b"payload"))
    assert target.read_bytes() == b"payload"
    with pytest.raises(PrunekitError, match="checksum mismatch"):
        download.download_url("http://x/f", tmp_path / "bad", good, opener=_opener(b"tampered"))
    assert not (tmp_path / "bad").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "sub"]  # no temporary files left
    assert list((tmp_path / "sub").iterdir()) == [target]


def test_download_url_network_error(tmp_path):
    def failing(url, timeout):
        raise OSError("no network")

    with pytest.raises(PrunekitError, match="no network"):
        download.download_url("http://x/f", tmp_path / "f", None, opener=failing)
    assert list(tmp_path.iterdir()) == []


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_extract_tar(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    _tar(archive, {"cifar-10-batches-py/test_batch": b"abc", "cifar-10-batches-py/x": b"d"})
    out = download.extract_tar(archive, tmp_path / "data")
    assert (out / "cifar-10-batches-py" / "test_batch").read_bytes() == b"abc"
    assert sorted(p.name for p in out.iterdir()) == ["cifar-10-batches-py"]


def test_extract_refuses_escaping_members(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    _tar(archive, {"../escaped": b"x"})
    with pytest.raises(PrunekitError, match="refusing"):
        download.extract_tar(archive, tmp_path / "data")
    assert not (tmp_path / "escaped").exists()
    assert list((tmp_path / "data").iterdir()) == []


def test_download_cifar_reuses_verified_archive(tmp_path, monkeypatch, formats):
    # Build an archive in the real layout and pretend it is the official one.
    source, _ = formats.write_cifar10(tmp_path / "src")
    archive = tmp_path / "data" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-py")
    md5 = download.md5sum(archive)
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    monkeypatch.setitem(download.CIFAR_ARCHIVES, "cifar10", (url, md5, "cifar-10-batches-py"))

    def no_network(*args, **kwargs):
        raise AssertionError("the verified archive must be reused")

    monkeypatch.setattr(download, "download_url", no_network)
    folder = download.download_dataset("cifar10", tmp_path / "data")
    assert (folder / "data_batch_5").is_file()


def test_unknown_download():
    with pytest.raises(ConfigError, match="cannot be downloaded"):
        download.download_dataset("digits", "/nonexistent")


def test_official_tables():
    assert set(download.MNIST_MD5) == {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    }
    assert all(url.startswith("https://") for url, _, _ in download.CIFAR_ARCHIVES.values())


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="real MNIST not available")
def test_real_mnist_checksums():
    for name, (_, content_md5) in download.MNIST_MD5.items():
        assert download.check_md5(REAL_MNIST / name, content_md5, decompress=True), name


def test_download_mnist_falls_back_to_next_mirror(tmp_path, monkeypatch, formats):
    source = tmp_path / "mirror"
    formats.write_mnist(source, gz=True)
    table = {
        name: ("unused", download.md5sum(source / name, decompress=True))
        for name in download.MNIST_MD5
    }
    monkeypatch.setattr(download, "MNIST_MD5", table)
    monkeypatch.setattr(download, "MNIST_MIRRORS", ("https://down/", "https://up/"))
    real_download_url = download.download_url
    requested = []

    def fake_download_url(url, destination, md5=None, md5_of_decompressed=False):
        requested.append(url)

        def opener(url, timeout):
            if url.startswith("https://down/"):
                raise OSError("mirror down")
            return _Response((source / url.rsplit("/", 1)[1]).read_bytes())

        return real_download_url(url, destination, md5, md5_of_decompressed, opener=opener)

    monkeypatch.setattr(download, "download_url", fake_download_url)
    from prunekit.data import get_dataset

    dataset = get_dataset("mnist", root=tmp_path / "data", train=False, download=True)
    assert len(dataset) == 10
    assert (tmp_path / "data" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    assert len(requested) == 8
    requested.clear()
    download.download_mnist(tmp_path / "data" / "mnist")  # all present and verified
    assert requested == []
