"""Modules that the libraries import on their own import but reviewflow's runs do not use,
imported only when something first reads them.

Keras imports ``matplotlib.pyplot`` at its import, for its image-gallery helpers, and
Great Expectations imports ``altair`` for the charts of one expectation reviewflow's suites
never hold. Importing them is part of the start of every process that loads a model or
validates a file (docs/cli.md, "The Prefect API each command starts"); the drawing code of
reviewflow (``tasks/charts.py``, ``tasks/training/plots.py``) gets the real modules,
imported the first time it reads one of their names.

``defer_unused_imports()`` puts a placeholder for each module of ``DEFERRED`` in
``sys.modules``, unless it is imported already. The first attribute read from a
placeholder (``plt.figure``, ``alt.Chart``, ``matplotlib.use`` switching pyplot's
backend) imports the real module, once, under one lock, and answers from it; later
imports get the real module.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types

# Imported at the libraries' own import, used only to draw: never on a scoring run.
DEFERRED = ("matplotlib.pyplot", "altair")

_IMPORTING = threading.RLock()


class DeferredModule(types.ModuleType):
    """Stands in ``sys.modules`` for a module not imported yet; the first name read from
    it imports the real module (``real_module``)."""

    def __getattr__(self, name: str):
        return getattr(real_module(self.__name__), name)


def real_module(name: str) -> types.ModuleType:
    """The module ``name``, imported now if a placeholder stands for it."""
    with _IMPORTING:
        current = sys.modules.get(name)
        if isinstance(current, DeferredModule):
            del sys.modules[name]
            try:
                return importlib.import_module(name)
            except BaseException:
                sys.modules.setdefault(name, current)
                raise
        return current if current is not None else importlib.import_module(name)


def defer_unused_imports(names: tuple[str, ...] = DEFERRED) -> list[str]:
    """Put a placeholder for each of ``names`` not imported yet (and installed) in
    ``sys.modules``. Returns the names deferred now."""
    deferred = []
    with _IMPORTING:
        for name in names:
            if name in sys.modules:
                continue
            spec = _spec_without_importing(name)
            if spec is None:
                continue  # not installed: an import of it fails as it would have
            placeholder = DeferredModule(name)
            placeholder.__spec__ = spec
            placeholder.__loader__ = spec.loader
            sys.modules[name] = placeholder
            deferred.append(name)
    return deferred


def _spec_without_importing(name: str):
    """The import spec of ``name``, found without importing it or its package (a
    submodule's spec is looked up in its package's folders)."""
    package, _, _ = name.rpartition(".")
    if not package:
        return importlib.util.find_spec(name)
    parent = sys.modules.get(package)
    if parent is not None:
        locations = getattr(parent, "__path__", None)
    else:
        parent_spec = _spec_without_importing(package)
        locations = parent_spec.submodule_search_locations if parent_spec else None
    if not locations:
        return None
    return importlib.machinery.PathFinder.find_spec(name, list(locations))
