"""Retraining: from labeled files to a promoted model version.

- ``labeled``: every valid labeled (and unlabeled) review under the data root.
- ``split``: the deterministic train / selection / gate split, grouped by movie.
- ``candidate``: the candidate's training steps (``train_on_split``, ``plan_refit``,
  ``refit``), ``Candidate``, and ``stage_candidate`` (the version and its record, staged).
- ``self_training``: which unlabeled reviews may be learned from, their pseudo-labels, and
  ``self_train``, the step (``SelfTraining``).
- ``slices``: the gate rows by the script of each review and by the slice column
  (``gate_slices``), and the one way a slice's figures are said (``describe_slice``).
- ``calibration``: the expected calibration error and the reliability bins of scores.
- ``evaluation``: metrics on held-out rows; the candidate and the champion on the gate rows,
  all of them and each slice (``compare_on_gate``, ``GateComparison``).
- ``promotion``: ``decide_promotion`` from a ``GateComparison`` and ``PromotionRules``, with
  a verdict on each slice (the guard), and ``conclude``: the staged version published,
  promoted or not (``Conclusion``).
- ``record``: what a training run records and returns, and when there is nothing new to
  learn.
- ``registry``: model versions under ``models/``, the champion pointer and its history;
  ``registry_files``: how they are written on a local folder or on object storage.
- ``card``: a version's record files and its model card (``write_record``, ``model_card``);
  ``plots``: its training curves and reliability diagram.
"""
