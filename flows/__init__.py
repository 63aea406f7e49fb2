"""The Prefect flows, their reports and the ``reviewflow`` command.

``score_reviews`` (the scoring path, one short file), ``score_queue`` (the file queue it
drives, with the tasks it submits) and ``score_watch`` (what the driver does while shards
run: checkpoints kept, progress inside files, the stop); ``retrain_model`` and ``retrain_report``; ``score_report``
and ``drift`` (what a scoring run publishes); ``cli`` (the command's arguments and commands),
``startup`` (how the command starts and ends: quiet defaults, the Prefect API while the
flow imports, SIGTERM, the fast exit), ``prefect_api`` (the temporary API a command starts
when none is configured) and ``common`` (settings and progress shared by them).
"""
