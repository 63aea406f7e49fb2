"""Where bytes live: local files with crash-safe semantics, and object-storage paths.

- ``local``: hashing, atomic writes, moves, staged Parquet, file locks, readable names.
- ``objects``: folders of the data contract on ``s3://`` and other fsspec URLs.
"""
