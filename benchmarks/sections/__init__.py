"""The sections of ``make bench``: ``SECTIONS`` is the one list of them, in the order they
run and are reported (``benchmarks/run.py`` runs them, ``benchmarks/report.py`` writes
them; ``python -m benchmarks.run --list`` prints them).

Each section is one module of this package, named as listed, with ``TITLE`` (its heading
in BENCHMARKS.md), ``NEEDS_SHARED_DATA`` (whether it needs ``../shared/data``; without
it the run reports the section as not run), ``run(bench) -> dict`` (its figures, or
``{"status": "not run", "reason": …}``) and ``render(data) -> list[str]`` (its Markdown).
Its docstring says what it measures and how. Code only that section uses lives in its
module; code several sections use lives in ``benchmarks/common.py``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

SECTIONS = ("accuracy", "peers", "throughput", "memory", "validation", "orchestration", "gpu", "profile",
            "dask", "cli", "languages", "shared_state", "object_listing", "late_labels")


def section_modules() -> dict[str, ModuleType]:
    """Every section's module, by name, in ``SECTIONS`` order."""
    return {name: importlib.import_module(f"{__name__}.{name}") for name in SECTIONS}
