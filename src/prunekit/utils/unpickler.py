"""A restricted unpickler that rebuilds tensors and executes nothing else.

This module is a drop-in ``pickle_module`` for ``torch.load`` (it has ``Unpickler``
and ``load``), for both the zip format and the legacy format of ``torch.save``.

Every global a pickle names goes through :meth:`RestrictedUnpickler.find_class`.
Only the functions and types needed to rebuild tensors and plain containers are
returned as themselves (see :data:`ALLOWED_GLOBALS`). Any other name (a training
config class, ``torch.optim.SGD``, ``os.system``...) is replaced by a fresh
subclass of :class:`ForeignObject`: calling it, or rebuilding an instance of it,
only records the arguments and state; nothing is imported and no code from the
pickle runs.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle
from typing import IO, Any, ClassVar

import torch
import torch._utils

__all__ = [
    "ALLOWED_GLOBALS",
    "ForeignObject",
    "RestrictedUnpickler",
    "Unpickler",
    "UnpicklingError",
    "foreign_names",
    "load",
    "loads",
]

UnpicklingError = pickle.UnpicklingError


class ForeignObject:
    """Inert stand-in for a global the restricted unpickler does not allow.

    Each refused global becomes its own subclass whose ``foreign_name`` is the
    qualified name it stands for (``"torch.optim.sgd.SGD"``). Calling the subclass
    (pickle's REDUCE), rebuilding an instance (NEWOBJ, BUILD) or filling it (APPENDS,
    SETITEMS) only stores what the pickle passed:

    - ``args``, ``kwargs``: the constructor or ``__reduce__`` arguments;
    - ``state``: what ``__setstate__`` received;
    - ``items``, ``entries``: appended items and set items.
    """

    foreign_name: ClassVar[str] = "?"
    # torch's legacy loader may inspect a container class; never let it write patches.
    dump_patches: ClassVar[bool] = False

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: list[Any]
    entries: dict[Any, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> ForeignObject:
        self = object.__new__(cls)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs)
        object.__setattr__(self, "state", None)
        object.__setattr__(self, "items", [])
        object.__setattr__(self, "entries", {})
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Everything is recorded by ``__new__``; nothing else happens."""

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "state", state)

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def add(self, item: Any) -> None:
        self.items.append(item)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.entries[key] = value

    def __reduce__(self) -> Any:
        raise TypeError(f"a placeholder for {self.foreign_name} cannot be pickled")

    def __repr__(self) -> str:
        return f"<ForeignObject {self.foreign_name}>"


def _build_allowed_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch", "UntypedStorage"): torch.UntypedStorage,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "slice"): slice,
        ("builtins", "complex"): complex,
        # protocol-2 pickles encode bytes as _codecs.encode(text, "latin1")
        ("_codecs", "encode"): codecs.encode,
    }
    if hasattr(torch._utils, "_rebuild_tensor_v3"):
        allowed[("torch._utils", "_rebuild_tensor_v3")] = torch._utils._rebuild_tensor_v3
    for name in dir(torch):
        value = getattr(torch, name)
        if isinstance(value, torch.dtype):
            allowed[("torch", name)] = value
        elif (
            name.endswith("Storage")
            and isinstance(value, type)
            and issubclass(value, torch.storage._LegacyStorage)
        ):
            allowed[("torch", name)] = value
    return allowed


ALLOWED_GLOBALS: dict[tuple[str, str], object] = _build_allowed_globals()
"""``(module, name)`` → object: the only globals a pickle gets as themselves."""

_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` returns only :data:`ALLOWED_GLOBALS`.

    Any other global becomes a :class:`ForeignObject` subclass named after it (one
    class per name and unpickler). Nothing is ever imported.
    """

    def __init__(self, file: IO[bytes], **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._placeholders: dict[str, type[ForeignObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        qualified = f"{module}.{name}"
        placeholder = self._placeholders.get(qualified)
        if placeholder is None:
            short = str(name).rpartition(".")[2] or "Foreign"
            placeholder = type(
                short,
                (ForeignObject,),
                {"foreign_name": qualified, "__qualname__": qualified, "__module__": "<foreign>"},
            )
            self._placeholders[qualified] = placeholder
        return placeholder


# The names torch.load looks up on a ``pickle_module``.
Unpickler = RestrictedUnpickler


def load(file: IO[bytes], **kwargs: Any) -> Any:
    """``pickle.load`` with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    """``pickle.loads`` with :class:`RestrictedUnpickler`."""
    return load(io.BytesIO(data), **kwargs)


def foreign_names(obj: object, limit: int = 10_000) -> list[str]:
    """Sorted qualified names of the :class:`ForeignObject` placeholders inside ``obj``.

    Walks dicts, lists, tuples, sets and the recorded arguments of placeholders
    (at most ``limit`` objects, so a huge or cyclic structure cannot stall it).
    """
    names: set[str] = set()
    seen: set[int] = set()
    stack: list[object] = [obj]
    while stack and len(seen) < limit:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, type) and issubclass(item, ForeignObject):
            names.add(item.foreign_name)
        elif isinstance(item, ForeignObject):
            names.add(item.foreign_name)
            stack.extend((item.args, item.kwargs, item.state, item.items, item.entries))
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return sorted(names)
