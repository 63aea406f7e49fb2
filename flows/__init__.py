"""The Prefect flows, their reports and the ``reviewflow`` command.

``score_reviews`` (the scoring path, one short file) and ``score_queue`` (the file queue it
drives, with the tasks it submits); ``retrain_model`` and ``retrain_report``; ``score_report``,
``score_artifacts`` and ``drift`` (what a scoring run publishes; ``artifact_tables``: how
every artifact keeps to a window's width); ``accuracy`` and ``accuracy_report`` (the
``measure-accuracy`` flow: accuracy on late labels, its event and artifacts);
``monitor_command`` (``reviewflow monitor``); ``cli`` (the command's arguments and commands),
``cli_output`` (what ``score`` and ``retrain`` print at the end: lines, or ``--json``),
``startup`` (how the command starts and ends: quiet defaults, the Prefect API while the
flow imports, the fast exit), ``stopping`` (Ctrl-C and SIGTERM at any point, and the line
a stopped command says), ``prefect_api`` (the temporary API a command starts when none is
configured) and ``common`` (settings and progress shared by them).
"""
