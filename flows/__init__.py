"""The Prefect flows, their reports and the ``reviewflow`` command.

``score_reviews`` (the scoring path, one short file: it drives ``tasks.scoring.queue``)
and ``score_queue`` (the Prefect tasks the queue's work runs as, and the task runner they
go to); ``rescore_archive`` (the backfill flow: archived inputs scored again with the
champion, through ``score_reviews``'s queue) and ``rescore_command`` (``reviewflow
rescore``); ``retrain_model`` and ``retrain_report`` (its model card and tables as
artifacts); ``score_report``, ``score_artifacts`` and ``drift`` (what a scoring run
publishes; ``artifact_tables``: how every artifact keeps to a window's width);
``accuracy`` and ``accuracy_report`` (the ``measure-accuracy`` flow: accuracy on late
labels, its event and artifacts); ``monitor_command`` (``reviewflow monitor``); ``cli``
(the command's arguments and commands),
``cli_output`` (what ``score`` and ``retrain`` print at the end: lines, or ``--json``),
``startup`` (how the command starts and ends: quiet defaults, the Prefect API while the
flow imports, the fast exit), ``stopping`` (Ctrl-C and SIGTERM at any point, and the line
a stopped command says), ``prefect_api`` (the temporary API a command starts when none is
configured), ``configuration`` (the one place a ``Settings`` is built: from the environment,
a command's options or a flow's parameters, a state URL's password lent, never passed) and
``common`` (the validator and progress shared by them).
"""
