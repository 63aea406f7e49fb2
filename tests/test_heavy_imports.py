"""The two cuts in what importing the heavy libraries costs, and the warnings of the
threads that import them (tasks/heavy_imports.py).

The drawing modules Keras and Great Expectations import but no run uses are deferred: a
process that loads a model and a suite has placeholders for them, reviewflow's charts
still draw with the real ones, and a placeholder read from many threads at once imports
its module once. The garbage collector makes no full pass while those libraries import,
runs again afterwards, and a pause held by two threads ends when both are done. A
warning raised in a thread that imports them stays off stderr even when another thread
drops the filter its library set; the main thread's own are shown.

Each check runs in a fresh interpreter: this worker has imported the libraries already.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import PROJECT


def python_run(code: str, tmp_path=None, *options: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *options, "-c", textwrap.dedent(code)],
                          cwd=tmp_path or PROJECT, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": f"{PROJECT}:{tmp_path or PROJECT}",
                               "TF_CPP_MIN_LOG_LEVEL": "2", "GX_ANALYTICS_ENABLED": "False",
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def run_python(code: str, tmp_path=None) -> str:
    return python_run(code, tmp_path).stdout


def test_loading_a_model_and_a_suite_leaves_the_drawing_modules_unimported(tmp_path):
    out = run_python(f"""
        import sys
        from tasks.heavy_imports import DeferredModule
        from tests.helpers import packaged_validator
        packaged_validator()  # the packaged suite, built: Great Expectations imported
        print("great_expectations" in sys.modules,
              isinstance(sys.modules["altair"], DeferredModule),
              isinstance(sys.modules["scipy.stats"], DeferredModule))
        import tasks.model.backend  # TensorFlow and Keras
        print(isinstance(sys.modules["matplotlib.pyplot"], DeferredModule))

        # reviewflow's own charts get the real pyplot, on the Agg backend...
        from tasks.charts import pyplot
        plt = pyplot()
        print("charts", type(sys.modules["matplotlib.pyplot"]).__name__, plt.get_backend())
        figure = plt.figure(figsize=(2, 1))
        figure.savefig({str(tmp_path / "drawn.png")!r})
        # ...and so does the library that imported the placeholder.
        import keras.src.visualization.plot_image_gallery as gallery
        print("keras", gallery.plt.figure is plt.figure)
        import altair
        print("altair", altair.Chart.__module__.startswith("altair"))
        # The promotion gate's tests use the real scipy.stats, and so do the Great
        # Expectations modules that reached the placeholder.
        import numpy as np
        from tasks.training.evaluation import mcnemar_exact
        mcnemar_exact(np.array([1, 0]), np.array([0.9, 0.8]), np.array([0.9, 0.1]))
        from great_expectations.expectations.metrics.column_aggregate_metrics import (
            column_bootstrapped_ks_test_p_value as ks)
        print("scipy.stats", type(sys.modules["scipy.stats"]).__name__,
              ks.stats.kstest is sys.modules["scipy.stats"].kstest)
    """)
    assert out.splitlines() == ["True True True", "True", "charts module Agg", "keras True",
                                "altair True", "scipy.stats module True"]
    assert (tmp_path / "drawn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_placeholder_read_by_many_threads_imports_its_module_once(tmp_path):
    (tmp_path / "slow_module.py").write_text(textwrap.dedent("""
        import time
        with open("imports.log", "a") as log:
            log.write("imported\\n")
        time.sleep(0.3)
        VALUE = 42
    """))
    out = run_python("""
        import sys, threading
        from tasks.heavy_imports import DeferredModule, defer_unused_imports
        print(defer_unused_imports(("slow_module", "no_such_module_anywhere")))
        import slow_module
        print(isinstance(slow_module, DeferredModule))
        seen = []
        threads = [threading.Thread(target=lambda: seen.append(slow_module.VALUE))
                   for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(seen == [42] * 8, type(sys.modules["slow_module"]).__name__)
        try:
            import no_such_module_anywhere  # noqa: F401
        except ModuleNotFoundError:
            print("missing still missing")
    """, tmp_path)
    assert out.splitlines() == ["['slow_module']", "True", "True module",
                                "missing still missing"]
    assert (tmp_path / "imports.log").read_text() == "imported\n"


def test_a_module_imported_already_is_left_as_it_is():
    out = run_python("""
        import sys
        import altair
        from tasks.heavy_imports import defer_unused_imports
        print(defer_unused_imports(), sys.modules["altair"] is altair)
    """)
    assert out.split() == ["['matplotlib.pyplot',", "'scipy.stats']", "True"]


def test_no_full_collection_while_the_libraries_import_and_the_collector_runs_after():
    out = run_python("""
        import gc
        import tasks.model.backend  # TensorFlow and Keras
        from tests.helpers import packaged_validator
        packaged_validator()  # Great Expectations
        print(gc.get_stats()[2]["collections"], gc.isenabled(), gc.get_freeze_count() > 100_000)
        frozen = gc.get_freeze_count()
        packaged_validator()  # imported already: nothing paused, nothing frozen again
        class Cycle:
            pass
        cycle = Cycle()
        cycle.me = cycle
        del cycle
        print(gc.collect() > 0, gc.get_freeze_count() <= frozen)  # freed ones leave it
    """)
    # Unpaused, the imports alone make several full passes over everything they made.
    assert out.splitlines() == ["0 True True", "True True"]


def test_a_pause_held_by_two_threads_ends_with_the_last_and_a_collector_turned_off_stays_off():
    out = run_python("""
        import gc, threading
        from tasks.heavy_imports import collection_paused, heavy_import
        first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
        seen = {}

        def first():
            with collection_paused():
                first_in.set()
                second_in.wait()
            first_out.set()

        def second():
            first_in.wait()
            with collection_paused():
                second_in.set()
                first_out.wait()
                seen["after the first left"] = gc.isenabled()
            seen["after both left"] = gc.isenabled()

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(seen["after the first left"], seen["after both left"], gc.get_freeze_count() > 0)

        gc.disable()
        with heavy_import("a_module_not_imported"):
            pass
        print(gc.isenabled())
        gc.enable()
        with heavy_import("gc"):  # imported already
            print(gc.isenabled())
    """)
    assert out.splitlines() == ["False True True", "False", "True"]


def test_what_was_frozen_is_collected_at_exit_so_no_extension_reports_a_leak():
    done = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import atexit, gc
        import duckdb
        # Runs after the handlers registered later: what the last collection will see.
        atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count()))
        connection = duckdb.connect()
        connection.sql("select 1 as a").arrow()

        class Holder:
            pass
        holder = Holder()
        holder.me, holder.connection = holder, connection  # a cycle holds the connection
        del holder, connection
        from tasks.heavy_imports import collection_paused
        with collection_paused():
            pass
        print("frozen:", gc.get_freeze_count() > 0)
    """)], cwd=PROJECT, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["frozen: True", "frozen at exit: 0"]
    # DuckDB's bindings count their objects at exit and print "nanobind: leaked ..." for
    # any still alive, such as a connection a frozen cycle holds.
    assert "leaked" not in done.stderr, done.stderr[-3000:]


# A library that hides its own import-time warning with a filter, as requests hides
# urllib3's "SOCKS support requires PySocks": it sets the filter (once the test's main
# thread has saved the filter list), then (once the main thread has restored it) warns.
NOISY_LIBRARY = """
import sys, warnings

class OptionalPartWarning(Warning):
    pass

main = sys.modules["__main__"]
main.block_entered.wait(60)
warnings.simplefilter("ignore", OptionalPartWarning)
main.filter_set.set()
main.filters_restored.wait(60)
warnings.warn("an optional part is missing", OptionalPartWarning)
"""

# As a command starts (flows/startup.py): the library imports in a background thread
# while the main thread runs library code that saves and restores the filters
# (warnings.catch_warnings) around the moment the library sets its filter; the main
# thread then warns of its own, and lets the library warn. A second background
# import (of a module already imported) adds no second filter.
IMPORTED_BESIDE_CATCH_WARNINGS = """
import threading, warnings
from tasks.heavy_imports import import_in_background

block_entered, filter_set, filters_restored = (threading.Event(), threading.Event(),
                                               threading.Event())

def load():
    import noisylib

thread = import_in_background(load, "warm-noisy")
with warnings.catch_warnings():
    block_entered.set()
    filter_set.wait(60)
warnings.warn("the main thread's own warning")
filters_restored.set()
thread.join()
import_in_background(load, "warm-again").join()
print("filters of the import threads:",
      sum(type(f[1]).__name__ == "_ImportThreads" for f in warnings.filters))
"""


def test_an_import_threads_warning_its_library_hid_stays_hidden_when_another_thread_drops_the_filter(
        tmp_path):
    """The library's "ignore" is dropped by the main thread's catch_warnings (Python's
    filters are not thread-safe); the import thread's warning still stays off stderr,
    the main thread's own is shown, and the filter is in the list once. A user's own
    -W shows the import thread's too."""
    (tmp_path / "noisylib.py").write_text(NOISY_LIBRARY)
    quiet = python_run(IMPORTED_BESIDE_CATCH_WARNINGS, tmp_path)
    assert quiet.stdout.splitlines() == ["filters of the import threads: 1"]
    assert "optional part" not in quiet.stderr, quiet.stderr
    assert "UserWarning: the main thread's own warning" in quiet.stderr, quiet.stderr

    shown = python_run(IMPORTED_BESIDE_CATCH_WARNINGS, tmp_path, "-W", "default")
    assert "OptionalPartWarning: an optional part is missing" in shown.stderr, shown.stderr
    assert "filters of the import threads: 0" in shown.stdout


def test_an_import_lock_left_held_by_this_thread_is_released_and_only_then():
    out = run_python("""
        import _imp, threading
        from tasks.heavy_imports import release_import_lock_left_held
        print(release_import_lock_left_held())  # not held: nothing to release
        _imp.acquire_lock()  # as an import step interrupted between taking and guarding it
        _imp.acquire_lock()
        importer = threading.Thread(target=lambda: __import__("json.tool"))
        importer.start()
        importer.join(1.0)
        print(importer.is_alive())  # waits for the lock this thread holds
        print(release_import_lock_left_held())
        importer.join(30)
        print(importer.is_alive(), release_import_lock_left_held())
    """)
    assert out.splitlines() == ["0", "True", "2", "False 0"]


def test_the_start_up_wait_releases_an_import_lock_left_held_and_says_so():
    """The command's wait for its warm-up imports (flows.startup) ends even when the main
    thread holds the import lock outside any import, and says what it released."""
    done = python_run("""
        import _imp, time
        import flows.startup as startup
        startup.IMPORT_LOCK_CHECK_SECONDS = 0.5
        _imp.acquire_lock()  # held before the warm-up threads import anything
        started = time.monotonic()
        startup.warm_heavy_imports()()
        import great_expectations, tasks.model.serving  # both whole
        print("imported", time.monotonic() - started < 120)
    """)
    assert done.stdout.splitlines() == ["imported True"]
    assert "released it" in done.stderr and "1 hold(s)" in done.stderr, done.stderr[-2000:]


def test_a_hold_taken_by_an_import_under_way_is_never_released():
    """Called from a finder, where the import system holds the lock around the call, it
    releases nothing and the import goes on."""
    out = run_python("""
        import sys
        from tasks.heavy_imports import release_import_lock_left_held
        seen = []
        class Finder:
            def find_spec(self, name, path=None, target=None):
                if name == "json.tool":
                    seen.append(release_import_lock_left_held())
                return None
        sys.meta_path.insert(0, Finder())
        import json.tool
        print(seen, json.tool.__name__)
    """)
    assert out.splitlines() == ["[0] json.tool"]
