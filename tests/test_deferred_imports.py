"""The drawing modules Keras and Great Expectations import but no run uses are deferred
(tasks/deferred_imports.py): a process that loads a model and a suite has placeholders
for them, reviewflow's charts still draw with the real ones, and a placeholder read from
many threads at once imports its module once.

Each check runs in a fresh interpreter: this worker has imported the libraries already.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import PROJECT


def run_python(code: str, tmp_path=None) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path or PROJECT,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": f"{PROJECT}:{tmp_path or PROJECT}",
                               "TF_CPP_MIN_LOG_LEVEL": "2", "GX_ANALYTICS_ENABLED": "False",
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_loading_a_model_and_a_suite_leaves_the_drawing_modules_unimported(tmp_path):
    out = run_python(f"""
        import sys
        from tasks.deferred_imports import DeferredModule
        from tests.helpers import packaged_validator
        packaged_validator()  # the packaged suite, built: Great Expectations imported
        print("great_expectations" in sys.modules,
              isinstance(sys.modules["altair"], DeferredModule))
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
    """)
    assert out.splitlines() == ["True True", "True", "charts module Agg", "keras True",
                                "altair True"]
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
        from tasks.deferred_imports import DeferredModule, defer_unused_imports
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
        from tasks.deferred_imports import defer_unused_imports
        print(defer_unused_imports(), sys.modules["altair"] is altair)
    """)
    assert out.split() == ["['matplotlib.pyplot']", "True"]
