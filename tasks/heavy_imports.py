"""What importing the heavy libraries (TensorFlow and Keras, Great Expectations, Prefect)
costs a process, the two cuts reviewflow makes in it, and their warnings kept off the
terminal while they import.

Every process that loads a model or validates a file imports them first: for a command,
most of its CPU (docs/cli.md, "The Prefect API each command starts").

- **Unused modules deferred.** Keras imports ``matplotlib.pyplot`` at its import, for its
  image-gallery helpers, and Great Expectations imports ``altair`` for the charts of one
  expectation and ``scipy.stats`` for the statistical tests of others (Kolmogorov-Smirnov,
  KL divergence), none of which reviewflow's suites hold; a scoring run uses none of
  them. ``defer_unused_imports()`` puts a placeholder for each module of ``DEFERRED`` in
  ``sys.modules``, unless it is imported already. The first attribute read from a
  placeholder (``plt.figure``, ``alt.Chart``, ``matplotlib.use`` switching pyplot's
  backend) imports the real module, once, under one lock, and answers from it; later
  imports get the real module. reviewflow's own drawing code (``tasks/charts.py``,
  ``tasks/training/plots.py``) and the promotion gate's tests
  (``tasks/training/evaluation.py``) get the real modules.
- **The cyclic garbage collector paused while they import** (``collection_paused``).
  These imports make a great many objects that live as long as the process (modules,
  functions, classes), and the collector's full passes, each walking every one of them,
  come back again and again while it runs; they find almost nothing to free. Paused
  until the imports end, then those objects are moved out of the collector's sight
  (``gc.freeze``), so a full pass during the run does not walk them either; back in
  sight at exit, for the interpreter's last collection.
- **Their warnings ignored while they import** (``import_warnings_ignored``). What these
  libraries warn of at import is about their own optional parts (urllib3, which
  TensorFlow imports through requests: "SOCKS support ... requires PySocks"), nothing a
  reviewflow user can act on, and the filters they set to hide it cannot be relied on
  here: a command imports them in threads (``flows.startup``) while the main thread runs
  code that uses ``warnings.catch_warnings``, which restores the whole filter list on
  leaving, dropping any filter another thread added meanwhile (Python documents it as
  not thread-safe). So a library's own "ignore" could vanish between its setting it and
  its import warning, and the warning reach the terminal, even after a stop's last
  line. An "ignore" set before the first import starts is in every list such a block
  saves, so none can drop it; it goes when the last import ends. A user's own warning
  options (``python -W``, ``PYTHONWARNINGS``) turn it off.

``heavy_import(*modules)`` does all three, around the first import of these libraries.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
import warnings
from collections.abc import Iterator

# Imported at the libraries' own import, used only to draw or by expectations reviewflow's
# suites do not hold: never on a scoring run.
DEFERRED = ("matplotlib.pyplot", "altair", "scipy.stats")

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


class _HeldByThreads:
    """A process-wide state that threads enter and leave, several at once (a command
    imports TensorFlow and Great Expectations in two): the first to enter turns it on
    (``begin``), the last to leave off (``end``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders = 0

    def enter(self) -> None:
        with self.lock:
            if self.holders == 0:
                self.begin()
            self.holders += 1

    def leave(self) -> None:
        with self.lock:
            self.holders -= 1
            if self.holders == 0:
                self.end()

    def begin(self) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError


class _CollectorPause(_HeldByThreads):
    """The process's one pause of the cyclic collector."""

    def __init__(self) -> None:
        super().__init__()
        self.resume = False  # whether the collector was on when the first holder came
        self.unfreeze_at_exit = False

    def begin(self) -> None:
        self.resume = gc.isenabled()
        gc.disable()

    def end(self) -> None:
        if not self.resume:
            return
        # What the imports made lives as long as the process: out of every later full
        # pass. The few cycles they left are kept with it, until exit.
        gc.freeze()
        gc.enable()
        if not self.unfreeze_at_exit:
            # The interpreter's last collection at exit skips frozen objects: without
            # this, extension modules that count their objects at exit (DuckDB's,
            # through nanobind) print "leaked" for what a cycle holds.
            atexit.register(gc.unfreeze)
            self.unfreeze_at_exit = True


class _ImportWarningsIgnored(_HeldByThreads):
    """The process's one "ignore" filter over every warning, while the heavy libraries
    import (see the module's docstring), unless the user set warning options."""

    def __init__(self) -> None:
        super().__init__()
        self.entry: tuple | None = None

    def begin(self) -> None:
        if sys.warnoptions:
            return  # python -W, PYTHONWARNINGS: the user asked to see them
        warnings.filterwarnings("ignore")
        self.entry = warnings.filters[0]

    def end(self) -> None:
        if self.entry is None:
            return
        # Removed by identity, not by restoring a saved list: the filters the libraries
        # added meanwhile stay. An "ignore" leaves nothing in the modules' registries
        # of warnings seen, so there is nothing to invalidate.
        with contextlib.suppress(ValueError):  # a library reset the filters: gone already
            warnings.filters.remove(self.entry)
        self.entry = None


# One per process, as the collector and the warning filters they change are.
_PAUSE = _CollectorPause()
_WARNINGS = _ImportWarningsIgnored()


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """The cyclic garbage collector off inside, for imports; on again, with what exists
    then frozen (``gc.freeze``), when the last pause of the process ends. A collector the
    process had turned off stays off."""
    _PAUSE.enter()
    try:
        yield
    finally:
        _PAUSE.leave()


@contextlib.contextmanager
def import_warnings_ignored() -> Iterator[None]:
    """Every warning ignored inside, unless the user set warning options, until the last
    thread inside leaves (see the module's docstring)."""
    _WARNINGS.enter()
    try:
        yield
    finally:
        _WARNINGS.leave()


@contextlib.contextmanager
def heavy_import(*modules: str) -> Iterator[None]:
    """Around the first import of the heavy libraries ``modules``: their unused modules
    deferred (``defer_unused_imports``), the collector paused (``collection_paused``) and
    their warnings ignored (``import_warnings_ignored``).
    Once all of them are imported it does nothing: a freeze in a process that has run for
    a while would keep the cycles it has made since for good."""
    if all(module in sys.modules for module in modules):
        yield
        return
    defer_unused_imports()
    with collection_paused(), import_warnings_ignored():
        yield
