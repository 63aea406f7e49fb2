"""Whole runs over odd input files: one scoring run over exports of every kind (no ids,
a legacy encoding, quoted line breaks, a bad line, duplicate columns, a JSON array), one
over hostile files (NUL bytes, a 50 MB review, names with '..' and '%', byte order
marks, UTF-16), and retraining on labeled files without ids. Every row read ends in
scored/ or quarantine/.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pandas as pd
from conftest import SAMPLES

from flows.score_reviews import score_reviews
from tasks.state.ledger import Ledger
from tests.helpers import (
    HARD_TEXTS,
    frame_of_hard_texts,
    korean_reviews,
    layout_of,
    quarantine_files_folder,
    quarantined_reasons,
    quarantined_rows,
    scored_rows,
)


def test_exports_of_every_kind_in_one_scoring_run(scoring_root):
    inbox = layout_of(scoring_root).incoming
    pd.DataFrame({"review": ["A wonderful film.", "A dull mess."],
                  "sentiment": ["positive", "negative"]}).to_csv(inbox / "imdb.csv", index=False)
    ko = korean_reviews(40)
    (inbox / "ko.tsv").write_bytes(("id\tdocument\n" + "".join(
        f"k{i}\t{t}\n" for i, t in enumerate(ko))).encode("cp949"))
    frame_of_hard_texts().to_csv(inbox / "pandas.tsv", sep="\t", index=False)
    (inbox / "one-bad-line.csv").write_text("review_id,text\nb1,good\nb2,too,many\nb3,fine\n")
    (inbox / "dup.csv").write_text("review_id,text,text\nd1,a,b\n")
    (inbox / "export.json").write_text(json.dumps([{"id": "j1", "review": "fine"}]))
    imdb_bytes = (inbox / "imdb.csv").read_bytes()
    summary = score_reviews(data_dir=str(scoring_root), settle_seconds=0)

    assert summary["files_scored"] == 5 and summary["files_quarantined"] == 1
    assert summary["rows_read"] == 2 + 40 + len(HARD_TEXTS) + 3 + 1 == \
        summary["rows_scored"] + summary["rows_quarantined"]
    assert summary["rows_quarantined"] == 1
    assert summary["rows_id_generated"] == 2
    assert summary["encodings"] == {"utf-8": 4, "cp949": 1}
    reason = next(iter(quarantined_reasons(scoring_root, "*dup.csv")))
    assert "appears 2 times" in json.loads(reason.read_text())["reason"]
    bad = quarantined_rows(scoring_root)
    assert bad.column("text").to_pylist() == ["b2,too,many\n"]
    assert "line 3: expected 2 fields, found 3" in bad.column("reason")[0].as_py()
    scored = scored_rows(scoring_root)
    generated = [i for i in scored.column("review_id").to_pylist() if "-row" in i]
    prefix = hashlib.sha256(imdb_bytes).hexdigest()[:16]
    assert sorted(generated) == [f"{prefix}-row1", f"{prefix}-row2"]

    ledger = Ledger(scoring_root / "state" / "ledger.sqlite")
    with sqlite3.connect(ledger.path) as db:
        recorded = dict(db.execute("SELECT source_file, encoding FROM scored_files").fetchall())
        ids = dict(db.execute("SELECT source_file, rows_id_generated FROM scored_files"))
    assert recorded["ko.tsv"] == "cp949" and recorded["imdb.csv"] == "utf-8"
    assert ids["imdb.csv"] == 2 and ids["ko.tsv"] == 0

    # The same id-less bytes again: the same generated ids, so the ledger knows them.
    (inbox / "imdb-again.csv").write_bytes(imdb_bytes)
    again = score_reviews(data_dir=str(scoring_root), settle_seconds=0)
    assert again["files_already_scored"] == 1 and again["rows_read"] == 0


def test_retraining_uses_labeled_files_without_ids(scoring_root):
    from flows.retrain_model import retrain_model

    labeled = scoring_root / "labeled"
    for sample in (SAMPLES / "labeled").iterdir():
        frame = (pd.read_csv(sample) if sample.suffix == ".csv"
                 else pd.read_json(sample, lines=True))
        # The IMDB Kaggle layout: review and sentiment, no id column.
        frame = frame.rename(columns={"text": "review", "label": "sentiment"})
        frame[["review", "sentiment"]].to_csv(labeled / f"{sample.stem}-no-ids.csv", index=False)
    summary = retrain_model(data_dir=str(scoring_root), architecture="seed", epochs=1)
    metrics = json.loads((layout_of(scoring_root).models / "versions" / summary["version"] /
                          "metrics.json").read_text())
    data = metrics["training_data"]
    assert data["files"] == 2 and data["files_quarantined"] == 0
    assert data["rows_id_generated"] == data["rows_read"] > 0
    assert data["encodings"] == {"utf-8": 2}
    assert summary["train_rows"] + summary["validation_rows"] > 0
    assert not list(quarantine_files_folder(scoring_root).rglob("*"))


def test_nul_bytes_a_huge_review_and_odd_names_in_one_run(scoring_root):
    inbox = layout_of(scoring_root).incoming
    (inbox / "nul bytes.csv").write_bytes(b"review_id,text\nn1,before\x00after is great\nn2,fine\n")
    (inbox / "huge.jsonl").write_text(json.dumps({"review_id": "h1", "text": "word " * 10_000_000})
                                      + "\n" + json.dumps({"review_id": "h2", "text": "ok"}) + "\n")
    (inbox / "영화 리뷰 ..%.csv").write_text("review_id,text\nk1,정말 재미있어요\n", encoding="utf-8")
    (inbox / "with-bom.csv").write_bytes(b"\xef\xbb\xbfid,review\nb1,good\n")
    (inbox / "utf16.tsv").write_bytes("id\tdocument\nu1\tgood film\n".encode("utf-16"))
    (inbox / "first.csv").write_text("review_id,text\nsame,first file\n")
    (inbox / "second.csv").write_text("review_id,text\nsame,second file\n")
    summary = score_reviews(data_dir=str(scoring_root), settle_seconds=0)

    got = sorted(scored_rows(scoring_root).column("review_id").to_pylist())
    assert got == sorted(["n1", "n2", "h2", "k1", "b1", "u1", "same", "same"])
    bad = quarantined_rows(scoring_root).to_pylist()
    assert [r["review_id"] for r in bad] == ["h1"]  # the 50 MB review, over max_text_chars
    assert bad[0]["failed_expectations"] == ["expect_column_value_lengths_to_be_between(text)"]
    assert summary["rows_read"] == summary["rows_scored"] + summary["rows_quarantined"] == 9
    archived = [p.name for p in layout_of(scoring_root).archive.rglob("*") if p.is_file()]
    assert any(name.endswith("영화 리뷰 __.csv") for name in archived)  # no "..", no "%"
    assert all(p.resolve().is_relative_to(scoring_root.resolve())
               for p in scoring_root.rglob("*"))
