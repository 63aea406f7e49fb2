"""Run state: which file contents were scored, who holds what, and the exactly-once commit.

How a file is committed exactly once is answered here, and only here: its claim, its
content lock, the ledger check, its checkpoints, the publish of its parts, the ledger
record, the archive move, the quarantine. Nothing here imports ``tasks.scoring``: what
the commit needs of a shard's work is ``staged.StagedShard``, which scoring's results are.

- ``backend``: the ``RunState`` interface and ``open_state`` (a second backend goes here).
- ``ledger``: the SQLite ledger under ``state/``; ``postgres``: the same in PostgreSQL.
- ``url``: a state URL read as libpq reads it, and the password-free form of it that may be shown.
- ``marker``: which run state scores a data root (``.reviewflow-state.json``), checked by
  ``open_state``; ``migrate``: a root moved from a state folder to a state database.
- ``inbox``: what is in the inbox, and claiming a file of it for one run.
- ``claim``: a file taken for this run (claimed, its claim lock held, hashed), then
  its content locked (``Hashed``, ``Claim``).
- ``commit``: publishing a file's scored parts and quarantine exactly once.
- ``inputs``: where a run's inputs come from and what becomes of them after the commit
  (``FromInbox``: archived; ``FromArchive``, a backfill: left where they are).
- ``staged``: what the commit needs of one shard's work (``StagedShard``).
- ``checkpoints``: the finished shards of a file not yet committed, kept for the next run.
- ``leftovers``: removing the temporaries killed runs left, once their writers are known dead.
- ``quarantine``: a whole file moved to quarantine beside its reason (scoring and
  training's reads alike).
"""
