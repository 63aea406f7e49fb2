"""``make bench``: the benchmarks behind BENCHMARKS.md. ``run`` runs the sections
(``sections.SECTIONS``, one module each), ``report`` writes the reports, ``common`` holds
what several sections share; the rule for a section is in benchmarks/README.md."""
