"""Sentiment models: named architectures, training, loading and batch prediction.

Every model reviewflow saves is one end-to-end Keras model that takes raw review
strings and returns the probability that a review is positive. The text
preprocessing (standardization and vectorization) is a layer inside that model, so
scoring cannot use a different preprocessing than training did (``ngram_keys`` makes a
word n-gram layer's ids faster from its own vocabulary and standardization: the same
ids, tested bit for bit).

Modules (those marked TF import TensorFlow; the others are plain Python):

- ``text``: the text rules (RE2 patterns, n-gram sizes) and the ``Tokenizer`` and
  ``Standardization`` kinds, shared with the drift monitor (``tasks.monitoring``);
- ``decision``: ``DECISION_THRESHOLD`` and ``predicted_labels``;
- ``params``: ``TrainingParams``, filled in from ``tasks.settings.Settings``, and
  ``refit_epochs``;
- ``vocabulary``: ``Vocabulary``, the tokens a loaded model knows, as the drift monitor
  looks them up (pyarrow);
- ``backend`` (TF): TensorFlow and Keras, imported with their load-time logs filtered, and
  ``library_versions``; no module outside this package imports TensorFlow or Keras
  (``tests/test_imports.py``);
- ``tokenizers`` (TF): the text functions saved models name (``standardize_review``,
  ``split_ngrams``, ...), registered with Keras as "reviewflow>" and the function name;
- ``layers`` (TF): ``NaiveBayesLogistic``, registered the same way;
- ``architectures`` (TF): ``Architecture``, ``ARCHITECTURES``, ``architecture()``;
- ``training`` (TF): ``train_model``, ``refit_model``, ``adapt_vocabulary``,
  ``TrainedModel``;
- ``ngram_keys`` (TF): ``word_ngram_ids``, the ids a word n-gram vectorizer gives,
  made from integers (faster, the same ids);
- ``serving`` (TF): ``save_model``, ``load_model``, ``ModelLoadError``, ``warm_up``,
  ``serving_function``, ``predict_scores`` (and ``slice_order``, the order it scores
  texts in), ``model_vocabulary``, ``compute_device``.

Those names are importable from ``tasks.model`` itself; each is loaded from its module
on first use (PEP 562), so importing ``tasks.model`` (or ``tasks.model.text``) does not
load TensorFlow. A process that wants TensorFlow loaded ahead imports
``tasks.model.serving``.

To add an architecture: an entry in ``ARCHITECTURES`` (``architectures.py``) with a
vectorizer and a classifier factory; a new text function goes in ``tokenizers.py``, a
new layer in ``layers.py``, each registered by name so its saved models load in Keras
safe mode. A registered name, once a model is saved with it, never changes
(``tests/test_saved_models.py`` loads models saved by earlier releases).
"""

from __future__ import annotations

import importlib

# Each name importable from tasks.model, and the module (in this package) it lives in.
_EXPORTS = {
    **dict.fromkeys(["HTML_LINE_BREAK", "MARKS", "ODD_SEPARATORS", "PUNCTUATION",
                     "Standardization", "Tokenizer", "UNSPACED_SCRIPTS"], "text"),
    **dict.fromkeys(["DECISION_THRESHOLD", "predicted_labels"], "decision"),
    **dict.fromkeys(["TrainingParams", "refit_epochs"], "params"),
    "Vocabulary": "vocabulary",
    "library_versions": "backend",
    **dict.fromkeys(["STANDARDIZATIONS", "TOKENIZERS", "split_ngrams", "split_ngrams_across",
                     "split_ngrams_bounded", "standardize_keeping_marks",
                     "standardize_review"], "tokenizers"),
    "NaiveBayesLogistic": "layers",
    **dict.fromkeys(["WordNgramIds", "word_ngram_ids"], "ngram_keys"),
    **dict.fromkeys(["ARCHITECTURES", "Architecture", "architecture"], "architectures"),
    **dict.fromkeys(["TrainedModel", "adapt_vocabulary", "end_to_end", "refit_model",
                     "train_model"], "training"),
    **dict.fromkeys(["ModelLoadError", "compute_device", "load_model", "model_vocabulary",
                     "predict_scores", "save_model", "serving_function", "slice_order",
                     "warm_up"],
                    "serving"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # found once; later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
