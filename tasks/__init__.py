"""Plain functions on plain data: no Prefect here (tests/test_imports.py holds to that).

Sub-packages, one per subsystem:

- ``reading``: review files of every supported format into normalized Arrow batches.
- ``model``: text rules, layers, architectures, training and serving of sentiment models.
- ``scoring``: one shard's work, how a file is split into shards, the per-worker cache.
- ``training``: labeled data, the split, self-training, evaluation, the registry.
- ``state``: the ledger, claims, locks and the exactly-once commit, on SQLite or PostgreSQL.
- ``storage``: crash-safe local file operations and object-storage paths.
- ``late_labels``: accuracy in production, from labels that arrive after the scores.

Shared modules at the top: ``settings`` (every default; it imports nothing of reviewflow,
so every module may import it), ``layout`` (every folder and file name of the data root),
``validation`` (the Great Expectations suite), ``errors`` (exit codes), ``outcomes`` (what
happened to a file), ``monitoring`` (drift signals), ``charts`` (what every picture
shares), ``failpoints`` (crash points for tests).
"""
