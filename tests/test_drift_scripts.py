"""Drift signals of a bilingual champion: each file is compared with the part of the
training data in its own scripts (issue 28 item 11), and the monitor's per-file cost stays
per run (item 16)."""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow as pa
import pytest
from conftest import SAMPLES

from flows.score_reviews import score_reviews
from tasks import monitoring
from tasks.layout import DataLayout
from tasks.settings import Settings
from tasks.training.registry import Registry
from tests.helpers import layout_of, monitoring_rows


@pytest.fixture(scope="module")
def bilingual_models(tmp_path_factory):
    """The champion `reviewflow demo` trains: the default architecture on the bundled
    English and Korean labeled samples (83% Latin, 17% Hangul letters)."""
    from flows.retrain_model import retrain_model

    root = tmp_path_factory.mktemp("bilingual") / "data"
    DataLayout(root=root).ensure()
    for sample in (SAMPLES / "labeled").iterdir():
        shutil.copy2(sample, root / "labeled" / sample.name)
    shutil.copy2(SAMPLES / "korean" / "train.tsv", root / "labeled" / "korean-train.tsv")
    assert retrain_model(data_dir=str(root))["promoted"]
    return layout_of(root).models


@pytest.fixture
def bilingual_root(data_dir, bilingual_models):
    shutil.rmtree(layout_of(data_dir).models)
    shutil.copytree(bilingual_models, layout_of(data_dir).models)
    return data_dir


def english_reviews() -> pd.DataFrame:
    frame = pd.read_csv(SAMPLES / "labeled" / "reviews-a.csv")
    return frame.rename(columns={"review": "text", "sentiment": "label"})


def test_the_demo_inbox_flags_nothing_and_shifted_files_still_are(bilingual_root):
    inbox = layout_of(bilingual_root).incoming
    for sample in (SAMPLES / "incoming").iterdir():  # what `reviewflow demo` scores
        shutil.copy2(sample, inbox / sample.name)
    shutil.copy2(SAMPLES / "korean" / "test.tsv", inbox / "korean-test.tsv")
    english = english_reviews()
    # English reviews a tenth as long as any the champion learned from.
    pd.DataFrame({"review_id": [f"s{i}" for i in range(len(english))],
                  "text": english["text"].str.slice(0, 12)}).to_csv(inbox / "short.csv",
                                                                    index=False)
    # Only negative reviews: the scores pile up at one end.
    negative = english[english["label"] == "negative"]
    pd.DataFrame({"review_id": [f"n{i}" for i in range(len(negative))],
                  "text": negative["text"], "label": 0}).to_csv(inbox / "negative.csv",
                                                                index=False)
    # Japanese: a script the champion never saw.
    pd.DataFrame({"review_id": [f"j{i}" for i in range(150)],
                  "text": [f"この映画はとても面白かったです。第{i}話も見たい。" for i in range(150)]}
                 ).to_csv(inbox / "japanese.csv", index=False)

    summary = score_reviews(data_dir=str(bilingual_root), settle_seconds=0)

    rows = monitoring_rows(bilingual_root).to_pandas().set_index("source_file")
    print(rows[["rows", "oov_rate", "length_psi", "score_psi", "script_shift", "flags"]])
    korean = rows.loc["korean-test.tsv"]
    assert korean["share_hangul"] > 0.9 and korean["rows"] == 300
    # Compared with the champion's Korean reviews, not with its mostly English whole.
    assert list(korean["flags"]) == [] and korean["script_shift"] == 0.0
    for name in ("new-reviews.csv", "more-reviews.jsonl.gz"):
        assert list(rows.loc[name, "flags"]) == [] and rows.loc[name, "script_shift"] == 0.0
    assert {"length_psi"} <= set(rows.loc["short.csv", "flags"])
    assert "script_shift" not in rows.loc["short.csv", "flags"]
    assert rows.loc["negative.csv", "rows"] == 197
    assert "score_psi" in rows.loc["negative.csv", "flags"]
    assert "script_shift" in rows.loc["japanese.csv", "flags"]
    assert rows.loc["japanese.csv", "script_shift"] == 1.0
    assert summary["drift"]["files_flagged"] == 3
    profile = Registry(layout_of(bilingual_root).models).read_profile(
        Registry(layout_of(bilingual_root).models).champion_version())
    assert profile["script_mix"]["hangul"] > 0.1 and profile["script_mix"]["latin"] > 0.7
    assert set(profile["by_script"]) == {"latin", "hangul"}
    assert monitoring.known_scripts(profile) == {"latin", "hangul"}


def test_a_bilingual_champion_still_flags_a_script_it_barely_saw():
    """Known scripts are those a real part of the training reviews is written in."""
    profile = {"by_script": {"latin": {"train_rows": 9_800}, "hangul": {"train_rows": 200}}}
    assert monitoring.known_scripts(profile) == {"latin"}
    profile["by_script"]["hangul"]["train_rows"] = 600  # 5.8%
    assert monitoring.known_scripts(profile) == {"latin", "hangul"}
    assert monitoring.known_scripts({"script_mix": {"latin": 1.0}}) is None  # version 1


def test_high_oov_in_the_trained_scripts_names_no_script_mismatch():
    """A Hangul file for a Hangul-trained champion whose tokens are unknown (decomposed
    jamo, another domain) is not told it is in the wrong script."""
    texts = pa.array(["재미있는 영화 정말 좋아요"] * 150)
    known = monitoring.Vocabulary(pa.array(["재", "미", "있", "는", "영", "화"]), True)
    profile = monitoring.reference_profile(texts, texts, [0.9] * 150, [1] * 150, known,
                                           "v", "ngram")
    unknown = monitoring.Vocabulary(pa.array(["x"]), True)
    counts = monitoring.observe_batch(texts, [0.9] * 150, pa.nulls(150, pa.int8()), unknown,
                                      profile, 1000)
    found = monitoring.signals(counts, profile)
    limits = monitoring.Thresholds.from_settings(Settings())
    (flag,) = [f for f in monitoring.flags("ko.tsv", found, profile, limits)
               if f.signal == "oov_rate"]
    assert found["script_shift"] == 0.0
    assert "text unlike the training data in the same script" in flag.message
    assert "it was trained on" not in flag.message


def test_many_small_files_build_the_vocabulary_lookup_once(scoring_root):
    """The vocabulary's lookup set is built once per loaded model, not per file."""
    inbox = layout_of(scoring_root).incoming
    for i in range(20):
        (inbox / f"one-{i}.csv").write_text(f"review_id,text\nr{i},a fine film number {i}\n")
    before = monitoring.LOOKUP_BUILDS["count"]
    summary = score_reviews(data_dir=str(scoring_root), settle_seconds=0)
    assert summary["files_scored"] == 20
    assert len(monitoring_rows(scoring_root)) == 20
    # A fresh root: its champion is loaded anew (tasks.scoring.workers keys models by path).
    assert monitoring.LOOKUP_BUILDS["count"] - before == 1


def test_the_lookup_set_counts_unknown_tokens_as_the_whole_vocabulary_does():
    """Leaving the n-grams (tokens with a space) out of the lookup set changes no count."""
    import pyarrow.compute as pc

    vocabulary = monitoring.Vocabulary(pa.array(["a", "good film", "film", "재", "재미", "!!",
                                                 "tab\tword", "tab", "映"]), True, True)
    texts = pa.array(["A good film!! 재미있었어요", "tab\tword 映画 film", "nothing known"])
    found = monitoring.tokens(texts, True, True)
    known = pc.sum(pc.is_in(found, value_set=vocabulary.tokens)).as_py()
    assert monitoring.unknown_tokens(texts, vocabulary) == (len(found), len(found) - known)
    assert "good film" not in vocabulary.lookup and "film" in vocabulary.lookup
