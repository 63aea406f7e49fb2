"""Retraining: from labeled files to a promoted model version.

- ``labeled``: every valid labeled (and unlabeled) review under the data root.
- ``split``: the deterministic train / selection / gate split, grouped by movie.
- ``self_training``: which unlabeled reviews may be learned from, and their pseudo-labels.
- ``evaluation``: metrics on held-out rows and the promotion decision.
- ``record``: what a training run records, and when there is nothing new to learn.
- ``registry``: model versions under ``models/``, the champion pointer and its history;
  ``registry_files``: how they are written on a local folder or on object storage.
- ``plots``: training curves.
"""
