"""TensorFlow and Keras, imported once for the modules of ``tasks.model`` that need them.

TensorFlow's libraries log while they load, ignoring ``TF_CPP_MIN_LOG_LEVEL`` unless
filtered (``tasks/native_logs.py``); importing them here, and only here, keeps that
filter on every path that loads them through ``tasks.model``.
"""

from __future__ import annotations

import os

from tasks.native_logs import native_log_filter

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

with native_log_filter():
    import keras
    import tensorflow as tf

__all__ = ["keras", "tf"]
