"""What importing the heavy libraries (TensorFlow and Keras, Great Expectations, Prefect)
costs a process, the two cuts reviewflow makes in it, and the warnings of the threads
that import them kept off the terminal.

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
- **The warnings of threads that import them ignored** (``import_in_background``). A
  command imports TensorFlow and Great Expectations in threads of their own
  (``flows.startup``) while its main thread runs code that uses
  ``warnings.catch_warnings``, which restores the whole filter list on leaving,
  dropping any filter another thread added meanwhile (Python documents it as not
  thread-safe). A library that hides its own import-time warning with a filter (requests
  hides urllib3's "SOCKS support ... requires PySocks") could then see the filter
  vanish before the warning, and the warning reach the terminal, even after a stop's
  last line. What those imports warn of is about the libraries' own optional parts,
  nothing a reviewflow user can act on; so one "ignore" filter, put first in the list
  before any such thread starts (so in every list a block saves), matches every warning
  raised in one of those threads and no other. The main thread's warnings (Prefect's
  about its settings, say) are shown. A user's own warning options
  (``python -W``, ``PYTHONWARNINGS``) turn it off.

``heavy_import(*modules)`` does the first two, around the first import of these
libraries.
"""

from __future__ import annotations

import _imp
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
from collections.abc import Callable, Iterator

# Python's import system, whose own steps take and release the import locks without
# guarding against an exception between the two: raised there (in a module lock's
# weakref callback, say), a KeyboardInterrupt leaves a lock held, and every other
# thread's next import waits for ever. Raised in the code of the module being
# imported, it unwinds the import as any error does.
IMPORT_MACHINERY = frozenset({"importlib._bootstrap", "importlib._bootstrap_external"})

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


class _CollectorPause:
    """The process's one pause of the cyclic collector, shared by the threads that import
    at once (a command imports TensorFlow and Great Expectations in two): the collector
    runs again when the last of them is done."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders = 0
        self.resume = False  # whether the collector was on when the first holder came
        self.unfreeze_at_exit = False

    def enter(self) -> None:
        with self.lock:
            if self.holders == 0:
                self.resume = gc.isenabled()
                gc.disable()
            self.holders += 1

    def leave(self) -> None:
        with self.lock:
            self.holders -= 1
            if self.holders == 0 and self.resume:
                # What the imports made lives as long as the process: out of every later
                # full pass. The few cycles they left are kept with it, until exit.
                gc.freeze()
                gc.enable()
                if not self.unfreeze_at_exit:
                    # The interpreter's last collection at exit skips frozen objects:
                    # without this, extension modules that count their objects at exit
                    # (DuckDB's, through nanobind) print "leaked" for what a cycle holds.
                    atexit.register(gc.unfreeze)
                    self.unfreeze_at_exit = True


class _ImportThreads:
    """The threads importing the heavy libraries beside the main thread. As the message
    pattern of an "ignore" warning filter (the filter calls its ``match``), it matches
    every warning raised in one of them, whatever its text."""

    def __init__(self) -> None:
        self.idents: set[int] = set()
        self.lock = threading.Lock()

    def match(self, _text: str) -> bool:
        return threading.get_ident() in self.idents

    def install(self) -> None:
        """Put the filter first, unless it is in the list already or the user set
        warning options (``python -W``, ``PYTHONWARNINGS``: they want to see them)."""
        with self.lock:
            if sys.warnoptions or any(entry[1] is self for entry in warnings.filters):
                return
            # Inserted as filterwarnings would, which only takes a text pattern. An
            # "ignore" leaves nothing in the modules' registries of warnings seen, so
            # there is nothing for the filters' version to invalidate.
            warnings.filters.insert(0, ("ignore", self, Warning, None, 0))


# One per process, as the collector and the warning filters they change are.
_PAUSE = _CollectorPause()
_IMPORT_THREADS = _ImportThreads()


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


def import_in_background(load: Callable[[], None], name: str) -> threading.Thread:
    """Start a daemon thread ``name`` running ``load`` (imports of the heavy libraries),
    every warning it raises ignored (see the module's docstring). Call it from the main
    thread, before the thread's imports can race with it."""
    _IMPORT_THREADS.install()

    def run() -> None:
        ident = threading.get_ident()
        _IMPORT_THREADS.idents.add(ident)
        try:
            load()
        finally:
            _IMPORT_THREADS.idents.discard(ident)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def release_import_lock_left_held() -> int:
    """Release Python's global import lock if this thread holds it while importing
    nothing; how many holds it released (0: this thread did not hold it).

    The import system takes that lock for a moment at a time (around a module lock's
    bookkeeping and each finder's call) and releases it in a ``finally`` or a ``with``
    that only starts after the lock is taken: an exception raised in between (a signal's
    handler or an exception another thread sends, which run between any two bytecodes)
    leaves it held, by a thread that goes on as if nothing happened. Every other
    thread's next import then waits for ever, and a thread that waits for an importing
    thread (``flows.startup``'s warm-up) with it. Nothing was changed under the lock by
    then, so releasing it is safe. Called outside any import, never inside one (where
    the hold is the import's own)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") in IMPORT_MACHINERY:
            return 0
        frame = frame.f_back
    released = 0
    while True:
        try:
            _imp.release_lock()
        except RuntimeError:  # not held by this thread (any more)
            return released
        released += 1


@contextlib.contextmanager
def heavy_import(*modules: str) -> Iterator[None]:
    """Around the first import of the heavy libraries ``modules``: their unused modules
    deferred (``defer_unused_imports``) and the collector paused (``collection_paused``).
    Once all of them are imported it does nothing: a freeze in a process that has run for
    a while would keep the cycles it has made since for good."""
    if all(module in sys.modules for module in modules):
        yield
        return
    defer_unused_imports()
    with collection_paused():
        yield
