"""The Prefect flows, their reports and the ``reviewflow`` command.

``score_reviews`` (the scoring path, one short file) and ``score_queue`` (the file queue it
drives); ``retrain_model`` and ``retrain_report``; ``score_report`` and ``drift`` (what a
scoring run publishes); ``cli`` (the command), ``prefect_api`` (the temporary API a command
starts when none is configured) and ``common`` (settings and progress shared by them).
"""
