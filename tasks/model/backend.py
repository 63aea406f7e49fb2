"""TensorFlow and Keras, imported once for the modules of ``tasks.model`` that need them.

TensorFlow's libraries log while they load, ignoring ``TF_CPP_MIN_LOG_LEVEL`` unless
filtered (``tasks/native_logs.py``); importing them here, and only here, keeps that
filter and the quiet default level (``quiet_by_default``) on every path that loads them
through ``tasks.model``, in whatever process: a host without a GPU prints no CUDA probe
line. The process's malloc arenas are capped here too (``tasks/native_memory.py``), and
the import is a heavy one (``tasks/heavy_imports.py``): the drawing modules Keras imports
but no run uses are deferred, the garbage collector paused while it runs.
"""

from __future__ import annotations

from tasks.heavy_imports import heavy_import
from tasks.native_logs import native_log_filter, quiet_by_default
from tasks.native_memory import limit_malloc_arenas

quiet_by_default()
limit_malloc_arenas()

with native_log_filter(), heavy_import("keras", "tensorflow"):
    import keras
    import tensorflow as tf

__all__ = ["keras", "library_versions", "tf"]


def library_versions() -> dict[str, str]:
    """The TensorFlow and Keras versions, as a version's metrics.json records them."""
    return {"tensorflow": tf.__version__, "keras": keras.__version__}
