"""The encoding a text file is read in: UTF-8 and UTF-16 as written; Korean legacy
encodings (cp949, EUC-KR) detected, real NSMC reviews included; Western single-byte and
other CJK files never taken for Korean; any other encoding only through the encodings
setting (REVIEWFLOW_ENCODINGS).
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tasks.reading import ReadReport, UnreadableFileError, resolve_encoding
from tasks.settings import Settings
from tests.helpers import korean_reviews, read_reviews

ROOT = Path(__file__).resolve().parent.parent

NSMC = ROOT.parent / "shared" / "data" / "nsmc" / "train.parquet"


def _nsmc_reviews() -> list[str]:
    if not NSMC.exists():
        pytest.skip(f"{NSMC} is absent (the shared NSMC data): real Korean reviews are needed")
    documents = pq.read_table(NSMC, columns=["document"]).column("document").to_pylist()
    reviews = []
    for text in documents:
        if text and "\t" not in text and "\n" not in text:
            try:
                text.encode("cp949")
            except UnicodeEncodeError:
                continue  # an emoji: a cp949 file cannot hold it
            reviews.append(text)
    return reviews


WESTERN = {
    "fr": "Très bon film, l'histoire est émouvante et les acteurs sont géniaux. Déçu par la "
          "fin, à revoir ; ça ne vaut pas « mieux » ! Où est passé le héros ? Noël, cœur",
    "de": "Großartiger Film, die Schauspieler überzeugen. Ärgerlich ist nur das Ende, schön "
          "trotzdem. Übertrieben? Öfter ansehen. Äußerst süß, läßt grüßen",
    "es": "¡Qué película! El guión es muy bueno, la actuación también. Señor, niño, canción; "
          "¿me encantó? Está genial, sí. Ñandú, pingüino",
}


@pytest.mark.parametrize("encoding", ["cp949", "euc-kr"])
def test_korean_legacy_encodings_are_detected(tmp_path, encoding):
    texts = korean_reviews(50)
    path = tmp_path / "ko.tsv"
    path.write_bytes(("id\tdocument\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(texts)))
                     .encode(encoding))
    report = ReadReport()
    assert read_reviews(path, report=report).column("text").to_pylist() == texts
    assert report.encoding in ("cp949", "euc_kr")


def test_western_legacy_encoding_needs_the_setting(tmp_path):
    texts = [f"Café naïve résumé – “fine” film №{i} ½" for i in range(60)]
    texts = [t.replace("№", "No") for t in texts]
    path = tmp_path / "en.csv"
    path.write_bytes(("id,review\n" + "".join(f"{i},{t}\n" for i, t in enumerate(texts)))
                     .encode("cp1252"))
    with pytest.raises(UnreadableFileError, match="REVIEWFLOW_ENCODINGS=") as caught:
        read_reviews(path)
    assert "cannot be decoded as UTF-8" in caught.value.reason
    report = ReadReport()
    table = read_reviews(path, report=report, encodings=["cp949", "cp1252"])
    assert table.column("text").to_pylist() == texts
    assert report.encoding == "cp1252"
    # Detection off and nothing configured: the file waits for the setting.
    with pytest.raises(UnreadableFileError, match="encodings setting"):
        read_reviews(tmp_path / "en.csv", detect_encoding=False)


def test_utf8_and_utf16_are_read_as_written(tmp_path):
    for name, data, encoding in (("bom.csv", "\ufeffid,review\n1,héllo\n".encode(), "utf-8"),
                                 ("plain.csv", "id,review\n1,héllo\n".encode(), "utf-8"),
                                 ("u16.tsv", "id\treview\n1\théllo\n".encode("utf-16"), "utf-16")):
        path = tmp_path / name
        path.write_bytes(data)
        report = ReadReport()
        assert read_reviews(path, report=report).column("text").to_pylist() == ["héllo"]
        assert report.encoding == encoding


def test_encodings_setting_from_the_environment(monkeypatch):
    monkeypatch.setenv("REVIEWFLOW_ENCODINGS", "cp949, cp1252")
    assert Settings().encodings == ["cp949", "cp1252"]
    monkeypatch.setenv("REVIEWFLOW_ENCODINGS", '["euc-kr"]')
    assert Settings().encodings == ["euc-kr"]
    monkeypatch.setenv("REVIEWFLOW_ENCODINGS", "klingon")
    with pytest.raises(ValueError, match="unknown encoding 'klingon'"):
        Settings()


def test_real_korean_reviews_in_cp949_are_detected(tmp_path):
    reviews = _nsmc_reviews()
    rnd = random.Random(28)
    for trial in range(60):
        sample = rnd.sample(reviews, rnd.choice([60, 120, 300, 1000]))
        body = "id\tdocument\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(sample))
        data = body.encode("cp949")
        if sum(byte > 127 for byte in data) < 256:
            continue
        path = tmp_path / f"ko{trial}.tsv"
        path.write_bytes(data)
        report = ReadReport()
        texts = read_reviews(path, report=report).column("text").to_pylist()
        assert report.encoding == "cp949", trial
        assert texts == sample


@pytest.mark.parametrize("language", sorted(WESTERN))
@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_western_single_byte_files_are_never_read_as_korean(tmp_path, language, encoding):
    rnd = random.Random(language)
    words = [word for word in WESTERN[language].split() if word.encode(encoding, "ignore")
             .decode(encoding) == word]  # latin-1 has no œ
    texts = [" ".join(rnd.sample(words, 12)) for _ in range(80)]
    path = tmp_path / f"{language}.csv"
    path.write_bytes(("id,review\n" + "".join(f"{i},\"{t}\"\n" for i, t in enumerate(texts)))
                     .encode(encoding))
    report = ReadReport()
    try:
        got = read_reviews(path, report=report).column("text").to_pylist()
    except UnreadableFileError as exc:
        assert "REVIEWFLOW_ENCODINGS" in exc.reason  # not detected: it waits for the setting
        return
    assert report.encoding not in ("cp949", "euc_kr")
    assert got == texts  # detected: then as the same text


@pytest.mark.parametrize("text, encoding", [
    ("この映画はとても面白かったです。俳優の演技が素晴らしく、物語も感動的でした。", "shift_jis"),
    ("この映画はとても面白かったです。俳優の演技が素晴らしく、物語も感動的でした。", "euc_jp"),
    ("这部电影非常好看，演员的表演很精彩，故事情节也很感人。我推荐大家去看。", "gbk"),
])
def test_other_cjk_encodings_are_not_taken_for_korean(text, encoding):
    data = ("id,review\n" + "".join(f"{i},{text}\n" for i in range(40))).encode(encoding)
    try:
        assert resolve_encoding(Path("x.csv"), data) not in ("cp949", "euc_kr")
    except UnreadableFileError:
        pass
