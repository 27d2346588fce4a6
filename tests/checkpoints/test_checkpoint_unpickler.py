"""The restricted unpickler rebuilds tensors and never runs code named by a pickle."""

import builtins
import collections
import os
import pickle

import pytest
import torch

from prunekit.checkpoints import ForeignObject, restricted_torch_load
from prunekit.errors import CheckpointError
from prunekit.utils import unpickler as restricted


class RunsShellCommand:
    """Unpickling this with plain pickle runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class WritesFile:
    """Unpickling this with plain pickle writes ``marker`` through ``exec``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",))


class DeletesTensor:
    """Unpickling this with plain pickle would remove a file (here: the marker's sibling)."""

    def __init__(self, victim):
        self.victim = str(victim)

    def __reduce__(self):
        return (os.remove, (self.victim,))


def test_plain_pickle_of_the_payload_does_run(tmp_path):
    # Sanity check of the payload itself, so the refusals below mean something.
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(WritesFile(marker)))
    assert marker.exists()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_malicious_checkpoint_is_neutralised(tmp_path, zip_format):
    shell_marker = tmp_path / "shell_marker"
    exec_marker = tmp_path / "exec_marker"
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    path = tmp_path / "evil.pt"
    torch.save(
        {
            "weight": torch.ones(2, 3),
            "shell": RunsShellCommand(shell_marker),
            "exec": WritesFile(exec_marker),
            "remove": DeletesTensor(victim),
        },
        path,
        _use_new_zipfile_serialization=zip_format,
    )

    loaded = restricted_torch_load(path)

    assert not shell_marker.exists()
    assert not exec_marker.exists()
    assert victim.read_text() == "keep me"
    torch.testing.assert_close(loaded["weight"], torch.ones(2, 3))
    assert isinstance(loaded["shell"], ForeignObject)
    assert loaded["shell"].foreign_name in {"posix.system", "nt.system"}
    assert loaded["shell"].args == (f"touch {shell_marker}",)
    assert loaded["exec"].foreign_name == "builtins.exec"
    assert loaded["remove"].foreign_name in {"posix.remove", "nt.remove"}
    assert restricted.foreign_names(loaded) == sorted(
        {type(v).foreign_name for k, v in loaded.items() if k != "weight"}
    )


def test_weights_only_loader_refuses_the_same_file(tmp_path):
    # What torch itself does with such a file: refuse it (we neutralise instead).
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"exec": WritesFile(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_raw_pickle_globals_become_inert_placeholders(tmp_path):
    marker = tmp_path / "marker"
    payload = pickle.dumps([WritesFile(marker), RunsShellCommand(marker)], protocol=0)
    loaded = restricted.loads(payload)
    assert not marker.exists()
    assert [type(obj).foreign_name for obj in loaded] == [
        "builtins.exec",
        f"{os.system.__module__}.system",
    ]


def test_allowed_globals_are_returned_as_themselves():
    unpickler = restricted.RestrictedUnpickler(__import__("io").BytesIO(b""))
    assert unpickler.find_class("collections", "OrderedDict") is collections.OrderedDict
    assert unpickler.find_class("torch._utils", "_rebuild_tensor_v2") is (
        torch._utils._rebuild_tensor_v2
    )
    assert unpickler.find_class("torch", "float32") is torch.float32
    assert unpickler.find_class("torch", "FloatStorage") is torch.FloatStorage
    for module, name in [("os", "system"), ("builtins", "eval"), ("torch", "load")]:
        placeholder = unpickler.find_class(module, name)
        assert issubclass(placeholder, ForeignObject)
        assert placeholder.foreign_name == f"{module}.{name}"
    # the same name gives the same placeholder within one load
    assert unpickler.find_class("os", "system") is unpickler.find_class("os", "system")


def test_placeholder_records_and_executes_nothing():
    unpickler = restricted.RestrictedUnpickler(__import__("io").BytesIO(b""))
    placeholder = unpickler.find_class("os", "system")
    instance = placeholder("rm -rf /", flag=True)
    instance.__setstate__({"a": 1})
    instance.append(1)
    instance["k"] = 2
    assert (instance.args, instance.kwargs, instance.state) == (
        ("rm -rf /",),
        {"flag": True},
        {"a": 1},
    )
    assert instance.items == [1] and instance.entries == {"k": 2}
    assert "os.system" in repr(instance)
    with pytest.raises(TypeError):
        pickle.dumps(instance)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(CheckpointError, match="TorchScript"):
        restricted_torch_load(path)
