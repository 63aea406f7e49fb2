"""What each process that scores shards keeps for itself: the model, the validator, who it is.

A Dask worker runs many shard tasks, often of several files and runs; loading the
champion or building the Great Expectations validator per task would cost more than
scoring a shard (BENCHMARKS.md has both costs). So both are cached here, at
module level, which on a Dask worker means once per worker process: each worker has its
own interpreter, nothing is shared between workers, and a worker that is restarted
starts with an empty cache. It is a cache, not state: the entry is keyed by everything
that decides its content (the model's location and version, which never change once
published; the suite's JSON and parameters), so a stale entry cannot be used. Only the
last model is kept, so a promotion does not leave the old champion in memory.

In the flow's own process (the thread runner) the same cache serves the flow's threads.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from tasks.layout import MODEL_FILE
from tasks.storage.location import Location
from tasks.storage.objects import as_location

_lock = threading.Lock()
_model: tuple[tuple[str, str], object] | None = None
_validators: dict[str, object] = {}
_device: str | None = None
# How many times this process loaded each model: the proof that a worker loads it once.
MODEL_LOADS: dict[tuple[str, str], int] = {}


@dataclass(frozen=True)
class ModelRef:
    """Which model to score with: its version and where its ``model.keras`` lies."""

    version: str
    location: Location

    @property
    def key(self) -> tuple[str, str]:
        return str(self.location), self.version


def cached_model(ref: ModelRef):
    """The model for ``ref``, loaded (and its serving function traced) once per process."""
    global _model
    with _lock:  # a worker with several threads must not load it twice at once
        if _model is not None and _model[0] == ref.key:
            return _model[1]
        from tasks.model import load_model, model_vocabulary, warm_up

        model = warm_up(load_model(_local_copy(ref)))
        model_vocabulary(model)  # kept with the model: every file's drift counts read it
        _model = (ref.key, model)
        MODEL_LOADS[ref.key] = MODEL_LOADS.get(ref.key, 0) + 1
        return model


def model_loads(ref: ModelRef) -> int:
    return MODEL_LOADS.get(ref.key, 0)


def _local_copy(ref: ModelRef) -> Path:
    """A local file of the model: itself, or (object storage) a copy in the temp folder.

    Keras loads from a local file. A published version never changes, so a copy made
    once per (location, version) is reused; it is written whole and renamed.
    """
    local = as_location(ref.location).local_file(ref.version, MODEL_FILE)
    if not local.exists():
        raise FileNotFoundError(
            f"{ref.location} does not exist on {socket.gethostname()}: Dask workers on "
            "other machines need the data root on shared storage or object storage")
    return local


def cached_validator(suite_config: dict, parameters: dict, require_label: bool = False):
    """A ``ReviewValidator`` for this suite, built at most once per process."""
    from tasks.validation import ReviewValidator

    key = json.dumps([suite_config, parameters, require_label], sort_keys=True, default=str)
    with _lock:
        if key not in _validators:
            _validators.clear()  # one suite at a time
            _validators[key] = ReviewValidator(suite_config, parameters=parameters,
                                               require_label=require_label)
        return _validators[key]


def here() -> dict:
    """Where this code runs: the Dask worker's address (or "local"), host, pid, device."""
    global _device
    address = "local"
    # A Dask worker imported distributed before it ran any task; elsewhere importing it
    # only to learn so would cost the first file of a run a quarter of a second.
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            address = distributed.get_worker().address
        except ValueError:
            pass  # distributed imported, but this is not a Dask worker
    if _device is None:
        from tasks.model import compute_device

        _device = compute_device()
    return {"worker": address, "host": socket.gethostname(), "pid": os.getpid(),
            "device": _device}


def warm(ref: ModelRef, suite_config: dict, parameters: dict) -> dict:
    """Load the model and build the validator in this process ahead of the first shard.

    For a long-lived cluster: ``client.run(warm, ref, suite, params)`` warms every
    worker at once (the benchmark does this to time scoring apart from start-up).
    """
    cached_model(ref)
    cached_validator(suite_config, parameters)
    return here()
