"""Scoring review files: the work one worker does, and how it is divided.

- ``shard``: score one shard of a file, or a bundle of small files (``score_shard``,
  ``score_small_files``, ``ScoringJob``, ``ShardResult``).
- ``checkpointed``: a whole file in one pass, cut into checkpoints handed over as they
  finish (``score_checkpointed``, ``Checkpoints``): the thread runner's large files.
- ``control``: what the driver shares with the shards in its process: a stop and
  progress counts (``ShardControl``).
- ``planning``: split a large file into shards by rows (``plan_shards``, ``Shard``).
- ``workers``: what each worker process keeps for itself (the model, the validator).
- ``rows``: validated reviews into the rows of ``scored/``.
- ``schema``: the columns of ``scored/`` and the schema to read it with as one dataset.
"""
