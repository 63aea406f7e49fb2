"""Run state: which file contents were scored, who holds what, and the exactly-once commit.

- ``backend``: the ``RunState`` interface and ``open_state`` (a second backend goes here).
- ``ledger``: the SQLite ledger under ``state/``; ``postgres``: the same in PostgreSQL.
- ``url``: what a state URL is and the password-free form of it that may be shown.
- ``inbox``: what is in the inbox, and claiming a file of it for one run.
- ``commit``: publishing a file's scored parts and quarantine exactly once.
- ``checkpoints``: the finished shards of a file not yet committed, kept for the next run.
"""
