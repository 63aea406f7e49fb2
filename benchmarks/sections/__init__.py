"""One module per section of ``make bench``: each has ``TITLE``, ``run(bench) -> dict`` and
``render(data) -> list[str]`` (Markdown lines for BENCHMARKS.md)."""
