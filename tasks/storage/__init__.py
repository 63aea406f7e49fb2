"""Where bytes live: one storage interface, a local and an object-storage implementation.

- ``location``: the interface, ``Location`` (an abstract class), and what both
  implementations share (``Entry``, temporary names, ``safe_name``).
- ``local``: ``LocalPath``, a ``pathlib.PosixPath`` on a local or mounted disk (hashing,
  atomic writes, moves, staged Parquet, file locks in ``locks``, readable names), and the
  module functions callers use, which take either implementation or a plain ``Path``.
- ``objects``: ``ObjectPath``, a key behind an ``s3://`` or other fsspec URL
  (``object_io`` holds what it does with fsspec alone), and ``as_location``, the factory.

Why an abstract class over paths rather than Dagster-style I/O managers: reviewflow's
code is written against ``pathlib`` (``/``, ``parent``, ``glob``, ``read_bytes``) and
hands paths to pyarrow, Keras, Prefect task parameters and Dask workers. ``LocalPath``
subclasses ``PosixPath``, so every ``Path`` operation keeps working and gives a
``LocalPath`` back, it pickles and validates as a ``Path``; ``ObjectPath`` already had
that shape. Each adds the reviewflow operations as methods (``write_bytes_atomic``,
``parquet_sink``, ``publish``, ``move_keeping``, ``identity``, ``scan``, ``subfolders``,
``files_named``, ``local_file``, ``remove_dead_temporaries``, ``check_reachable``, ...)
and says what its store can do (``supports_locks``, ``supports_links``,
``supports_claims``). ``as_location`` decides which class a string or path becomes, once;
no implementation module branches on the other (tests/test_storage_branches.py).
"""
