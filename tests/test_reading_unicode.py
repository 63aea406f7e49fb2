"""Korean text in NFD or with zero-width characters reads, and scores, as its NFC form in
every format; compatibility Hanja stay as written.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import read_reviews

KOREAN = ["아 더빙.. 진짜 짜증나네요 목소리", "흠...포스터보고 초딩영화줄....오버연기조차 가볍지 않구나",
          "너무재밓었다그래서보는것을추천한다", "교도소 이야기구먼 ..솔직히 재미는 없다..평점 조정",
          "사이몬페그의 익살스런 연기가 돋보였던 영화!스파이더맨에서 늙어보이기만 했던 커스틴 던스트가 너무나도 이뻐보였다",
          "ㅋㅋㅋ 최고의 영화 ㅠㅠ 강추합니다"]


def _write(path: Path, texts: list[str]) -> None:
    rows = [{"review_id": f"r{i}", "text": t} for i, t in enumerate(texts)]
    kind = path.name.split(".", 1)[1]
    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    elif kind == "json":
        path.write_text(json.dumps(rows))
    else:
        pd.DataFrame(rows).to_csv(path, index=False, sep="\t" if kind == "tsv" else ",")


def _zero_width(text: str) -> str:
    marks = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
    return "".join(char + marks[i % len(marks)] for i, char in enumerate(text))


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "json", "parquet"])
def test_nfd_and_zero_width_texts_read_as_nfc(tmp_path, kind):
    forms = {"nfc": KOREAN, "nfd": [unicodedata.normalize("NFD", t) for t in KOREAN],
             "zw": [_zero_width(t) for t in KOREAN]}
    assert forms["nfd"] != forms["nfc"]
    texts = {}
    for form, given in forms.items():
        path = tmp_path / f"{form}.{kind}"
        _write(path, given)
        texts[form] = read_reviews(path).column("text").to_pylist()
    assert texts["nfc"] == texts["nfd"] == texts["zw"] == KOREAN


def test_compatibility_hanja_stay_as_written(tmp_path):
    # KS X 1001 encodes some Hanja twice (U+F900 block): NFC would merge them.
    texts = ["\uf933\uf990 영화", unicodedata.normalize("NFD", "한국") + "\uf9cf"]
    _write(tmp_path / "hanja.csv", texts)
    assert read_reviews(tmp_path / "hanja.csv").column("text").to_pylist() == [
        "\uf933\uf990 영화", "한국\uf9cf"]


@pytest.mark.parametrize("ascii_rows", [0, 1, 40])
def test_rows_mixed_with_ascii_ones_are_normalized_in_place(tmp_path, ascii_rows):
    # Only the rows outside ASCII go through the normalization; each row must come back
    # where it was, as it would alone, whatever the ASCII rows around it.
    odd = [unicodedata.normalize("NFD", KOREAN[0]), _zero_width("café"), "\uf933\uf990 영화",
           "naïve" + unicodedata.normalize("NFD", "é"), KOREAN[1], "\u200b"]
    texts = []
    for index, text in enumerate(odd):
        texts += [text] + [f"plain review {index}-{n}" for n in range(ascii_rows)]
    _write(tmp_path / "mixed.parquet", texts)
    alone = []
    for index, text in enumerate(texts):
        _write(tmp_path / f"alone-{index}.parquet", [text])
        alone += read_reviews(tmp_path / f"alone-{index}.parquet").column("text").to_pylist()
    read = read_reviews(tmp_path / "mixed.parquet").column("text").to_pylist()
    assert read == alone
    assert read[0] == KOREAN[0] and read[1 + ascii_rows] == "café"
    assert read[2 * (1 + ascii_rows)] == "\uf933\uf990 영화"
    assert read[3 * (1 + ascii_rows)] == "naïveé" and unicodedata.is_normalized("NFC", read[3 * (1 + ascii_rows)])
    assert [t for t in read if t.startswith("plain")] == [t for t in texts if t.startswith("plain")]


def test_nfd_and_zero_width_reviews_score_like_nfc(tmp_path, trained_models):
    from tasks.model import load_model, predict_scores
    from tasks.training.registry import Registry

    registry = Registry(trained_models)
    model = load_model(registry.model_path(registry.champion_version()))
    scores = {}
    for form, given in (("nfc", KOREAN), ("nfd", [unicodedata.normalize("NFD", t) for t in KOREAN]),
                        ("zw", [_zero_width(t) for t in KOREAN])):
        path = tmp_path / f"{form}.csv"
        _write(path, given)
        texts = np.array(read_reviews(path).column("text").to_pylist(), dtype=object)
        scores[form] = predict_scores(model, texts, 8)
    np.testing.assert_array_equal(scores["nfd"], scores["nfc"])
    np.testing.assert_array_equal(scores["zw"], scores["nfc"])
