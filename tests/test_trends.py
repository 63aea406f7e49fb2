"""The runs of monitoring/ as figures and as a picture (issue 40, item 5): a run's figures
are its run summary's (``signals`` over its files' summed counts, not an average of its
files' figures), the share of reviews per main script beside the share of letters, the
figures per language, and a trends picture whose axes fit 1 to N runs, keep each
threshold in view and mark the flagged runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib.colors import to_rgba

from tasks import monitoring
from tasks.charts import FLAGGED_COLOR
from tasks.monitoring import (
    MONITORING_SCHEMA,
    MonitorCounts,
    Thresholds,
    monitoring_row,
    monitoring_table,
    observe_batch,
    read_monitoring,
    reference_profile,
    run_figures,
    signals,
    trends_figure,
)
from tasks.settings import Settings
from tests.helpers import layout_of

ENGLISH = ["A good film with a fine cast and a long, warm, funny script that I liked a lot.",
           "A dull film, far too long, with a cast that never seemed to care at all."]
KOREAN = ["좋은 영화", "지루했다"]
VOCABULARY = monitoring.Vocabulary(pa.array(
    ["a", "good", "film", "with", "fine", "cast", "and", "long", "warm", "funny", "script",
     "that", "i", "liked", "lot", "dull", "far", "too", "never", "seemed", "to", "care", "at",
     "all", "좋", "은", "영", "화"]), characters_of_unspaced_scripts=True)
THRESHOLDS = Thresholds.from_settings(Settings())


def profile_of_both() -> dict:
    """A reference profile of a champion that learned English and Korean."""
    rng = np.random.default_rng(1)
    train = pa.array([ENGLISH[i % 2] for i in range(600)] + [KOREAN[i % 2] for i in range(600)])
    held = pa.array([ENGLISH[i % 2] for i in range(200)] + [KOREAN[i % 2] for i in range(200)])
    scores = rng.uniform(0, 1, 400)
    return reference_profile(train, held, scores, (scores > 0.5).astype(int), VOCABULARY,
                             "v1", "ngram")


def counts_of(texts: list[str], scores, labels=None) -> MonitorCounts:
    labels = pa.array(labels if labels is not None else [None] * len(texts), pa.int8())
    return observe_batch(pa.array(texts), np.asarray(scores, dtype=float), labels, VOCABULARY,
                         PROFILE, 1_000)


PROFILE = profile_of_both()


def file_row(name: str, counts: MonitorCounts, started: datetime, run: str,
             version: str = "v1") -> dict:
    found = signals(counts, PROFILE)
    raised = monitoring.flags(name, found, PROFILE, THRESHOLDS)
    return monitoring_row(found, raised, counts, run_started=started, flow_run_id=run,
                          model_version=version, source_file=name, source_sha256="ab" * 32,
                          has_profile=True)


def frame_of(rows: list[dict]) -> pd.DataFrame:
    return monitoring_table(rows).to_pandas()


def test_a_runs_figures_are_its_summarys_not_an_average_of_its_files():
    rng = np.random.default_rng(2)
    started = datetime(2026, 3, 1, tzinfo=UTC)
    big = counts_of([ENGLISH[i % 2] for i in range(1000)], rng.uniform(0, 1, 1000))
    odd = counts_of([ENGLISH[0]] * 120, np.full(120, 0.51))  # every review scored alike
    rows = [file_row("big.csv", big, started, "r1"), file_row("odd.csv", odd, started, "r1")]
    (run,) = run_figures(frame_of(rows), {"v1": PROFILE})
    whole = signals(MonitorCounts().add(big).add(odd), PROFILE)  # what ScoreSummary.drift() does
    for name in ("oov_rate", "score_psi", "length_psi", "script_shift", "positive_share"):
        assert run[name] == whole[name], name
    averaged = np.average([r["score_psi"] for r in rows], weights=[r["rows"] for r in rows])
    assert abs(run["score_psi"] - averaged) > 0.05  # the old picture's figure was another one
    assert run["exact"] and run["files"] == 2 and run["rows"] == 1120
    assert run["files_flagged"] == 1 and "score_psi" in run["flags"]  # odd.csv alone


def test_half_korean_reviews_are_half_hangul_by_reviews_not_by_letters():
    texts = [ENGLISH[i % 2] for i in range(100)] + [KOREAN[i % 2] for i in range(100)]
    counts = counts_of(texts, np.linspace(0, 1, 200), [1, 0] * 100)
    found = signals(counts, PROFILE)
    assert found["review_shares"]["hangul"] == 0.5 and found["review_shares"]["latin"] == 0.5
    assert found["script_mix"]["hangul"] < 0.1  # a share of letters: Korean reviews are short
    row = file_row("mixed.csv", counts, datetime(2026, 3, 1, tzinfo=UTC), "r1")
    assert row["review_share_hangul"] == 0.5 and row["letter_share_hangul"] == row["share_hangul"]
    # Per language: the Korean reviews' tokens the vocabulary lacks, the English ones' none.
    by_script = found["by_script"]
    assert by_script["latin"]["oov_rate"] == 0.0 and by_script["hangul"]["oov_rate"] > 0.3
    assert by_script["latin"]["reviews"] == by_script["hangul"]["reviews"] == 100
    assert counts.tokens == sum(counts.script_tokens)  # every sampled row has letters here
    assert by_script["latin"]["labeled_rows"] == 100


def test_rows_written_before_the_counts_are_read_and_drawn_from_their_files(tmp_path):
    """A part written before counts, letter_share_* and review_share_* existed."""
    old_schema = pa.schema([f for f in MONITORING_SCHEMA if not f.name.startswith(
        ("letter_share_", "review_share_", "counts"))])
    started = datetime(2026, 3, 1, tzinfo=UTC)
    rows = []
    for name, n, rate in (("a.csv", 300, 0.1), ("b.csv", 100, 0.5)):
        row = {field.name: None for field in old_schema}
        row.update(run_started=started, flow_run_id="r0", model_version="v0", source_file=name,
                   rows=n, sampled_rows=n, labeled_rows=0, oov_rate=rate, share_latin=1.0,
                   has_profile=False, flags=[])
        rows.append(row)
    folder = layout_of(tmp_path).monitoring / "run_date=2026-03-01"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=old_schema), folder / "part-old.parquet")
    table = read_monitoring(layout_of(tmp_path).monitoring)
    assert table["letter_share_latin"].to_pylist() == [1.0, 1.0]
    (run,) = run_figures(table.to_pandas(), {"v0": None})
    assert not run["exact"] and run["oov_rate"] == 0.2  # weighted by the rows sampled
    assert run["letter_shares"]["latin"] == 1.0 and run["review_shares"] is None


# ---------------------------------------------------------------- the picture
def runs_over(days: int, count: int, oov: tuple[float, float], flagged: int | None = None,
              version_change: int | None = None) -> list[dict]:
    """``count`` runs over ``days`` days, the unknown-token rate rising from oov[0] to
    oov[1]; run ``flagged`` has a Japanese file flagged for it."""
    start = datetime(2026, 3, 1, 6, tzinfo=UTC)
    rows = []
    for index in range(count):
        started = start + timedelta(days=days * index / max(count - 1, 1))
        counts = counts_of([ENGLISH[i % 2] for i in range(400)] + [KOREAN[i % 2]
                                                                  for i in range(400)],
                           np.linspace(0, 1, 800))
        rate = oov[0] + (oov[1] - oov[0]) * index / max(count - 1, 1)
        counts.unknown_tokens = round(counts.tokens * rate)
        version = "v2" if version_change is not None and index >= version_change else "v1"
        rows.append(file_row("reviews.csv", counts, started, f"r{index}", version))
        if index == flagged:
            japanese = counts_of(["えいががすきです"] * 200, np.full(200, 0.2))
            rows.append(file_row("japanese.csv", japanese, started, f"r{index}", version))
    return run_figures(frame_of(rows), {"v1": PROFILE, "v2": PROFILE})


def panel(figure, title_start: str):
    return next(ax for ax in figure.axes if ax.get_title().startswith(title_start))


def x_span(ax) -> timedelta:
    low, high = ax.get_xlim()
    return mdates.num2date(high) - mdates.num2date(low)


def test_one_run_gets_a_time_axis_of_minutes_not_years():
    figure = trends_figure(runs_over(0, 1, (0.02, 0.02)), {"v1": PROFILE}, THRESHOLDS)
    oov = panel(figure, "unknown-token rate")
    assert timedelta(minutes=4) <= x_span(oov) <= timedelta(hours=1)
    low, high = oov.get_ylim()
    assert low == 0 and 0.3 <= high < 0.6  # the threshold in view (and the Korean reviews)


def test_three_runs_keep_the_threshold_in_view_so_a_small_rise_looks_small():
    runs = runs_over(2, 3, (0.021, 0.028))
    assert [round(r["oov_rate"], 3) for r in runs] == [0.021, 0.025, 0.028]
    figure = trends_figure(runs, {"v1": PROFILE}, THRESHOLDS)
    oov = panel(figure, "unknown-token rate")
    low, high = oov.get_ylim()
    assert (0.028 - 0.021) / (high - low) < 0.03
    assert any(list(line.get_ydata()) == [0.3, 0.3] for line in oov.get_lines())
    assert timedelta(days=2) < x_span(oov) < timedelta(days=3)
    for title, limit in (("score PSI", 0.25), ("length PSI", 0.25), ("reviews in scripts", 0.2)):
        assert panel(figure, title).get_ylim()[1] >= limit, title


def test_thirty_runs_mark_the_flagged_run_the_version_change_and_each_language():
    runs = runs_over(29, 30, (0.02, 0.03), flagged=12, version_change=20)
    assert [run["files_flagged"] for run in runs] == [0] * 12 + [1] + [0] * 17
    assert "script_shift" in runs[12]["flags"]
    figure = trends_figure(runs, {"v1": PROFILE, "v2": PROFILE}, THRESHOLDS)
    shift = panel(figure, "reviews in scripts")
    (ring,) = [c for c in shift.collections if len(c.get_offsets())
               and np.allclose(c.get_edgecolor()[0], to_rgba(FLAGGED_COLOR))]
    flagged_at = mdates.date2num(runs[12]["run_started"])
    assert np.allclose(ring.get_offsets()[:, 0], [flagged_at])
    assert timedelta(days=29) < x_span(shift) < timedelta(days=35)
    oov = panel(figure, "unknown-token rate")
    labels = [line.get_label() for line in oov.get_lines()]
    assert "Latin-script reviews" in labels and "Hangul reviews" in labels  # learned both
    changes = [line for line in oov.get_lines() if line.get_linestyle() == ":"]
    assert [pd.Timestamp(line.get_xdata()[0]) for line in changes] == [runs[20]["run_started"]]


def test_names_the_font_cannot_draw_are_shown_as_code_points_not_empty_boxes():
    """A Korean file name on the run's picture: the font has no Hangul, and matplotlib
    would draw the same empty box for every syllable (and warn)."""
    import warnings

    from tasks.charts import drawable
    from tasks.monitoring.run_picture import run_picture
    from tasks.settings import Settings

    assert drawable("film (1).csv") == "film (1).csv"
    assert drawable("영화.csv") == "\\uc601\\ud654.csv"
    assert drawable("리뷰.csv") != drawable("영화.csv")
    row = {"rows": 500, "flags": [], "oov_rate": 0.1, "script_shift": 0.0, "score_psi": 0.1,
           "length_psi": 0.1, "review_shares": {"hangul": 1.0}}
    files = [{**row, "source_file": "영화리뷰.csv"}, {**row, "source_file": "films.csv"}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph … missing from font(s)" is a UserWarning
        picture = run_picture(files, row, Thresholds.from_settings(Settings()))
    assert picture.startswith(b"\x89PNG")
