"""Drift signals for review text: reference profiles, per-batch counts, PSI and flags.

A retraining saves a *reference profile* of its data beside the model
(``models/versions/<version>/profile.json``): how long its training texts are, which
scripts they are written in, how much of the held-out text the model's own vocabulary
covers, and how the model's scores spread over the held-out rows. No text is kept, only
bin edges, shares and rates.

Each scoring run counts the same things on the batches it already has
(``observe_batch``); the counts add up over batches, shards and files
(``MonitorCounts.add``), and ``signals`` turns the counts of a file, or of a run, into
the figures an operator reads:

- ``oov_rate``: the share of the text's tokens that are not in the model's vocabulary
  (words, or single characters of Hangul, Han, Kana and Thai for the n-gram model,
  which looks those up character by character); computed on a sample of rows;
- ``length_psi`` and ``score_psi``: the population stability index of text length (in
  characters) and of the score, over the reference profile's decile bins;
- ``script_mix``: the share of letters in each script (``letter_share_<script>``);
  ``review_shares``: the share of reviews mainly written in each script;
  ``by_script``: the figures of each script's reviews alone; ``script_shift``: the share of
  the file's reviews written mainly in a script the champion did not learn from (one
  that fewer than ``KNOWN_SCRIPT_SHARE`` of its training reviews, and fewer than
  ``KNOWN_SCRIPT_ROWS`` of them, are mainly written in);
- ``positive_share`` and, where rows carry labels, ``accuracy``.

A review is *mainly written* in the script most of its letters are in. The profile keeps
each script's part of the training data apart (``by_script``), and a file is compared
with the mixture of those parts weighted by its own reviews' scripts: a Korean file is
measured against the champion's Korean training reviews, an English one against its
English ones, so a bilingual champion does not flag every single-language file. A
profile without ``by_script`` (saved before version 2) is compared whole, and its script
shift is the total variation distance of the two script mixes.

The population stability index is ``sum((a - e) * ln(a / e))`` over bins, with ``e``
the reference share and ``a`` the observed share of a bin (each at least 1e-4, so an
empty bin counts as rare rather than impossible). By the usual rule of thumb, below 0.1
is no shift, 0.1-0.25 a moderate one, above 0.25 a significant one.

Pure functions on Arrow arrays and numpy: no Prefect, no TensorFlow. Plotting imports
matplotlib only when called.

Modules: ``text`` (the model's tokens and the scripts of text; ``Vocabulary``, the tokens
a model knows, is ``tasks.model.vocabulary``'s, re-exported),
``profiles`` (bins, PSI, the reference profile and what it leads one to expect),
``drift_signals`` (``MonitorCounts``, ``observe_batch``, ``signals``, ``Thresholds``,
``flags``), ``dataset`` (the ``monitoring/`` rows, read back), ``trends`` (each run's
figures from its files' counts, as the run summary computes them, and their picture)
and ``run_picture`` (one run's files against the thresholds).
Every public name is importable from ``tasks.monitoring`` itself.
"""

from tasks.model.vocabulary import ASCII_WHITESPACE, LOOKUP_BUILDS, Vocabulary
from tasks.monitoring.dataset import (
    COUNTS_TYPE,
    MONITORING_SCHEMA,
    monitoring_row,
    monitoring_table,
    read_monitoring,
)
from tasks.monitoring.drift_signals import (
    Flag,
    MonitorCounts,
    Thresholds,
    flags,
    observe_batch,
    review_shares,
    script_figures,
    signals,
)
from tasks.monitoring.profiles import (
    DECILES,
    KNOWN_SCRIPT_ROWS,
    KNOWN_SCRIPT_SHARE,
    PROFILE_VERSION,
    PSI_FLOOR,
    bin_counts,
    decile_edges,
    describe_mix,
    expected,
    known_scripts,
    psi,
    psi_allowance,
    reference_profile,
    script_mix,
    script_shift,
    shares,
)
from tasks.monitoring.run_picture import run_picture
from tasks.monitoring.text import (
    ODD_SEPARATORS,
    SCRIPT_NAMES,
    SCRIPTS,
    UNSPACED_SCRIPTS,
    letters_per_row,
    main_scripts,
    rows_per_script,
    sample,
    sampled_rows,
    script_letters,
    standardize,
    tokens,
    unknown_tokens,
)
from tasks.monitoring.trends import learned_scripts, plot_trends, run_figures, trends_figure

__all__ = [
    "ASCII_WHITESPACE",
    "COUNTS_TYPE",
    "DECILES",
    "Flag",
    "KNOWN_SCRIPT_ROWS",
    "KNOWN_SCRIPT_SHARE",
    "LOOKUP_BUILDS",
    "MONITORING_SCHEMA",
    "MonitorCounts",
    "ODD_SEPARATORS",
    "PROFILE_VERSION",
    "PSI_FLOOR",
    "SCRIPTS",
    "SCRIPT_NAMES",
    "Thresholds",
    "UNSPACED_SCRIPTS",
    "Vocabulary",
    "bin_counts",
    "decile_edges",
    "describe_mix",
    "expected",
    "flags",
    "known_scripts",
    "learned_scripts",
    "letters_per_row",
    "main_scripts",
    "monitoring_row",
    "monitoring_table",
    "observe_batch",
    "plot_trends",
    "psi",
    "psi_allowance",
    "read_monitoring",
    "reference_profile",
    "review_shares",
    "rows_per_script",
    "run_figures",
    "run_picture",
    "sample",
    "sampled_rows",
    "script_figures",
    "script_letters",
    "script_mix",
    "script_shift",
    "shares",
    "signals",
    "standardize",
    "tokens",
    "trends_figure",
    "unknown_tokens",
]
