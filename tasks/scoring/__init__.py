"""Scoring review files: how a file becomes Parquet, the work one worker does, and how it
is divided.

- ``queue``: the file queue of a run (``FileQueue``): claims each ready file, plans its
  shards, submits them through the ``submit`` the flow gives it, and has each file
  committed once its shards are done (``tasks.state`` commits it).
- ``watch``: what the driver does while shards run: checkpoints kept as they finish,
  the counts of the files in flight (``Working``), the stop that reaches the shards.
- ``shard``: score one shard of a file, or a bundle of small files (``score_shard``,
  ``score_small_files``, ``ScoringJob``, ``ShardResult``, ``plan_key``).
- ``checkpointed``: a whole file in one pass, cut into checkpoints handed over as they
  finish (``score_checkpointed``, ``Checkpoints``): the thread runner's large files.
- ``control``: what the driver shares with the shards in its process: a stop and
  progress counts (``ShardControl``).
- ``backfill``: which archived inputs a backfill scores again, and its plan (files, rows).
- ``planning``: split a large file into shards by rows (``plan_shards``, ``Shard``).
- ``workers``: what each worker process keeps for itself (the model, the validator).
- ``rows``: validated reviews into the rows of ``scored/``.
- ``schema``: the columns of ``scored/`` and the schema to read it with as one dataset
  (``SCORED_DATASET_SCHEMA``; ``scored_schema`` with every part's pass-through columns).
- ``passthrough``: the input's other columns in the parts: registered with their types
  before a file is scored (``file_columns``, ``register``), cast per batch (``split``).
"""
