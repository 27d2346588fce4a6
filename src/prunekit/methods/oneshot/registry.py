"""One-shot methods by name: a *selection* (which weights go) and an *update* (how the
kept weights compensate), each a pure function registered under its name.

A selection is ``select(problem, settings, update) -> Selection``: ``settings`` is the
method's own settings object (or ``None``), ``update(removed) -> Update`` is the update
the method is paired with (a search may score candidate masks with it). An update is
``solve(problem, removed, settings) -> Update``. Presets name common pairs
(``cbs`` = ``cbs_s+cbs_u``); any pair can be written ``selection+update``.

Adding a method: write one file that defines the function and decorates it with
:func:`register_selection` (or :func:`register_update`), and import that file in
``prunekit/methods/oneshot/__init__.py``.

A *layer-wise* method (:func:`register_layerwise`: ``sparsegpt``, ``obc``...) is its own
selection and update, solved layer by layer on calibration inputs instead of a Fisher;
``MethodSpec.layerwise`` tells the callers to run ``layerwise.prune_layerwise``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prunekit.errors import ConfigError


@dataclass(frozen=True)
class RegisteredFunction:
    """A registered selection or update: its name, function, whether it needs the
    Fisher, the type of its settings (or None) and a one-line summary. A layer-wise
    method also has its ``solver`` (one block → ``LayerPruneResult``), whether it
    ``updates`` the kept weights and its ``workspace(rows, d_in)``: the bytes its solver
    needs for one block beyond H and the weights (for the memory estimate)."""

    name: str
    function: Callable[..., Any]
    needs_fisher: bool
    settings: type | None
    summary: str
    solver: Callable[..., Any] | None = None
    updates: bool = True
    workspace: Callable[[int, int], int] | None = None

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


SELECTIONS: dict[str, RegisteredFunction] = {}
UPDATES: dict[str, RegisteredFunction] = {}
PRESETS: dict[str, tuple[str, str]] = {}


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def _registrar(table: dict[str, RegisteredFunction], kind: str):
    def register(
        name: str, *, needs_fisher: bool = False, settings: type | None = None, summary: str = ""
    ) -> Callable:
        def decorate(fn: Callable) -> Callable:
            if name in table:
                raise ValueError(f"{kind} {name!r} is registered twice")
            doc = summary or (fn.__doc__ or "").split("\n")[0]
            table[name] = RegisteredFunction(name, fn, needs_fisher, settings, doc)
            return fn

        return decorate

    return register


register_selection = _registrar(SELECTIONS, "selection")
register_selection.__doc__ = "Decorator: register ``select(problem, settings, update)`` as a name."
register_update = _registrar(UPDATES, "update")
register_update.__doc__ = "Decorator: register ``solve(problem, removed, settings)`` as a name."


def register_layerwise(
    name: str,
    solver: Callable,
    *,
    settings: type,
    updates: bool = True,
    summary: str = "",
    workspace: Callable[[int, int], int] | None = None,
) -> None:
    """Register a layer-wise method: ``solver(task, settings)`` prunes one block of a
    layer on its Hessian (``layerwise.BlockTask``); ``name`` alone is the method.
    ``workspace(rows, d_in)``: its extra bytes per block, counted in the memory check."""

    def needs_calibration(problem: Any, settings: Any, update: Any) -> Any:
        raise ConfigError(
            f"{name!r} is a layer-wise method: it prunes on calibration inputs, not on a "
            "Fisher; call prune_model or prune_layerwise"
        )

    if name in SELECTIONS:
        raise ValueError(f"selection {name!r} is registered twice")
    doc = summary or (solver.__doc__ or "").split("\n")[0]
    SELECTIONS[name] = RegisteredFunction(
        name, needs_calibration, False, settings, doc, solver, updates, workspace
    )
    PRESETS[name] = (name, "none")


def register_preset(name: str, selection: str, update: str) -> None:
    """``name`` as a short form of ``selection+update``."""
    PRESETS[name] = (selection, update)


@dataclass(frozen=True)
class MethodSpec:
    """A resolved one-shot method: its canonical name and its two registered parts."""

    name: str
    selection: RegisteredFunction
    update: RegisteredFunction

    @property
    def needs_fisher(self) -> bool:
        return self.selection.needs_fisher or self.update.needs_fisher

    @property
    def layerwise(self) -> bool:
        """Whether this is a layer-wise method (pruned by ``prune_layerwise``)."""
        return self.selection.solver is not None

    @property
    def settings_types(self) -> tuple[type, ...]:
        kinds = (self.selection.settings, self.update.settings)
        return tuple(dict.fromkeys(k for k in kinds if k is not None))


def _unknown(kind: str, name: str, known: Iterable[str]) -> ConfigError:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(
        f"unknown one-shot {kind} {name!r}{hint}: use a preset ({', '.join(PRESETS)}) or "
        f"'selection+update' with selection in {', '.join(SELECTIONS)} and update in "
        f"{', '.join(UPDATES)}"
    )


def get_method(name: str) -> MethodSpec:
    """``"cbs"`` → cbs_s + cbs_u; ``"magnitude+cbs_u"``; a bare selection gets no update.
    Names are case-insensitive, ``-`` and ``_`` are the same; unknown names raise a
    ConfigError listing the valid ones."""
    key = _key(name)
    if key in PRESETS:
        selection, update = PRESETS[key]
        return MethodSpec(key, SELECTIONS[selection], UPDATES[update])
    selection, _, update = key.partition("+")
    selection, update = selection.strip(), (update.strip() or "none")
    if selection not in SELECTIONS:
        raise _unknown("selection", selection, SELECTIONS)
    if update not in UPDATES:
        raise _unknown("update", update, UPDATES)
    if SELECTIONS[selection].solver is not None and update != "none":
        raise ConfigError(
            f"{selection!r} is a layer-wise method with its own weight update: write "
            f"{selection!r} alone, without '+{update}'"
        )
    canonical = selection if update == "none" else f"{selection}+{update}"
    return MethodSpec(canonical, SELECTIONS[selection], UPDATES[update])


def canonical_name(name: str) -> str:
    """The one spelling of a method name (``" CBS"`` → ``"cbs"``, ``cbs-s`` → ``cbs_s``)."""
    return get_method(name).name


def settings_for(kind: type | None, given: Iterable[object]) -> Any:
    """The object of type ``kind`` among ``given``, else ``kind()`` (its defaults)."""
    if kind is None:
        return None
    for item in given:
        if isinstance(item, kind):
            return item
    return kind()
