"""Write a small synthetic set of Korean movie reviews in NSMC format.

    python data/samples/korean/make_korean.py

writes ``train.tsv`` and ``test.tsv`` beside this script: tab-separated ``id``,
``document``, ``label`` (1 positive, 0 negative) with a header row, as in the Naver
Sentiment Movie Corpus. Every phrase below was written for this project; no review
comes from NSMC or any other data set.

The reviews are composed the way Korean reviews vary: the same adjective stem takes
many endings (지루해요, 지루했다, 지루하더라, 지루함...), nouns take different particles
(영화가, 영화는, 영화도), and spaces are often left out (정말지루했음). So whole
"words" rarely repeat between reviews while their syllables and syllable pairs do:
a word-only model sees mostly unknown tokens at test time, a character n-gram model
does not. The output is deterministic.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

HERE = Path(__file__).parent

# Stems of 하다-adjectives conjugate regularly; _ha_forms writes their endings.
POSITIVE_HA = ["재미있", "훌륭하", "신선하", "탄탄하", "흥미진진하", "완벽하", "유쾌하", "따뜻하",
               "깔끔하", "섬세하", "풍성하", "짜릿하"]
NEGATIVE_HA = ["지루하", "유치하", "뻔하", "어색하", "엉성하", "답답하", "산만하", "허술하",
               "밋밋하", "불쾌하", "억지스럽", "형편없"]

# Other predicates, each with its conjugated forms written out.
POSITIVE_FORMS = [
    ["좋아요", "좋았다", "좋았어요", "좋네요", "좋더라", "좋았음", "좋습니다", "좋았습니다", "좋더라고요"],
    ["멋져요", "멋졌다", "멋졌어요", "멋지네요", "멋지더라", "멋졌음", "멋집니다", "멋졌습니다"],
    ["아름다워요", "아름다웠다", "아름다웠어요", "아름답네요", "아름답더라", "아름다웠음", "아름답습니다"],
    ["감동적이에요", "감동적이었다", "감동적이었어요", "감동적이네요", "감동적이더라", "감동적이었음"],
    ["즐거웠어요", "즐거웠다", "즐겁네요", "즐겁더라", "즐거웠음", "즐거웠습니다"],
    ["뛰어나요", "뛰어났다", "뛰어났어요", "뛰어나네요", "뛰어나더라", "뛰어났음", "뛰어납니다"],
    ["인상적이에요", "인상적이었다", "인상적이었어요", "인상적이네요", "인상적이더라", "인상적이었음"],
    ["최고예요", "최고였다", "최고였어요", "최고네요", "최고더라", "최고였음", "최고입니다"],
]
NEGATIVE_FORMS = [
    ["별로예요", "별로였다", "별로였어요", "별로네요", "별로더라", "별로였음", "별로입니다"],
    ["실망스러워요", "실망스러웠다", "실망스러웠어요", "실망스럽네요", "실망스럽더라", "실망스러웠음"],
    ["아까워요", "아까웠다", "아까웠어요", "아깝네요", "아깝더라", "아까웠음", "아깝습니다"],
    ["짜증나요", "짜증났다", "짜증났어요", "짜증나네요", "짜증나더라", "짜증났음", "짜증납니다"],
    ["최악이에요", "최악이었다", "최악이었어요", "최악이네요", "최악이더라", "최악이었음", "최악입니다"],
    ["지겨워요", "지겨웠다", "지겨웠어요", "지겹네요", "지겹더라", "지겨웠음", "지겹습니다"],
    ["후회돼요", "후회됐다", "후회됐어요", "후회되네요", "후회되더라", "후회됐음", "후회됩니다"],
]

# Nouns, and whether they end in a consonant (which picks the particle's form).
NOUNS = [("영화", False), ("스토리", False), ("연기", False), ("결말", True), ("음악", True),
         ("연출", True), ("대사", False), ("전개", False), ("배우들", True), ("캐릭터", False),
         ("영상미", False), ("각본", True), ("주인공", True), ("분위기", False), ("액션", True)]
PARTICLES = {False: ["가", "는", "도", "까지"], True: ["이", "은", "도", "까지"]}
ADVERBS = ["정말", "너무", "진짜", "완전", "엄청", "아주", "꽤", "참", "생각보다", "역시", "솔직히"]

CONCEDE_POSITIVE = ["좋았지만", "괜찮았지만", "나쁘지 않았는데", "볼만했지만", "훌륭했지만"]
CONCEDE_NEGATIVE = ["아쉬웠지만", "좀 별로였지만", "지루했지만", "어색했는데", "뻔했지만"]
POSITIVE_CLOSERS = ["강력 추천합니다", "꼭 보세요", "또 보고 싶어요", "시간 가는 줄 몰랐다",
                    "별 다섯 개", "인생 영화 등극", "가족이랑 다시 볼래요", "여운이 길게 남네요"]
NEGATIVE_CLOSERS = ["돈 아까움", "보지 마세요", "시간 낭비였다", "중간에 나올 뻔",
                    "별 하나도 아깝다", "잠이 쏟아졌다", "다시는 안 봄", "기대하지 마세요"]
NEUTRAL = ["주말에 친구랑 봤어요", "극장에 사람이 많았다", "팝콘 먹으면서 봤음", "어제 개봉해서 봤는데",
           "원작은 안 읽었어요", "두 시간 조금 넘어요", "동생이 보자고 해서 봄", "평점 보고 골랐어요",
           "조조로 봤습니다", "예고편은 봤었음"]


def _ha_forms(stem: str) -> list[str]:
    """Endings of a 하다/있다/없다/스럽다 predicate (해요, 했다, 하더라, ...)."""
    if stem.endswith("하"):
        base = stem[:-1]
        return [base + e for e in ("해요", "했다", "했어요", "하네요", "하더라", "했음", "합니다",
                                   "했습니다", "하더라고요", "함", "했네")]
    if stem.endswith("스럽"):
        base = stem[:-1]
        return [base + e for e in ("러워요", "러웠다", "러웠어요", "럽네요", "럽더라", "러웠음",
                                   "럽습니다", "러움")]
    # 있/없 stems take 어 endings
    return [stem + e for e in ("어요", "었다", "었어요", "네요", "더라", "었음", "습니다",
                               "었습니다", "더라고요", "음", "었네")]


def _predicates(positive: bool) -> list[list[str]]:
    stems = POSITIVE_HA if positive else NEGATIVE_HA
    return [_ha_forms(s) for s in stems] + (POSITIVE_FORMS if positive else NEGATIVE_FORMS)


def _clause(rng: random.Random, positive: bool) -> list[str]:
    noun, consonant = rng.choice(NOUNS)
    words = [noun + rng.choice(PARTICLES[consonant])]
    if rng.random() < 0.7:
        words.append(rng.choice(ADVERBS))
    words.append(rng.choice(rng.choice(_predicates(positive))))
    return words


def _join(rng: random.Random, words: list[str]) -> str:
    """Words joined by spaces, except that reviewers often leave spaces out."""
    text = words[0]
    for word in words[1:]:
        text += ("" if rng.random() < 0.45 else " ") + word
    return text


def _contrast(rng: random.Random, positive: bool) -> str:
    """A concession about another aspect, in the other direction ("음악은 좋았지만")."""
    noun, consonant = rng.choice(NOUNS)
    concession = rng.choice(CONCEDE_NEGATIVE if positive else CONCEDE_POSITIVE)
    return _join(rng, [noun + ("은" if consonant else "는"), concession])


def review(rng: random.Random, positive: bool) -> str:
    parts = []
    if rng.random() < 0.4:
        parts.append(rng.choice(NEUTRAL))
    if rng.random() < 0.25:
        parts.append(_contrast(rng, positive))
    for _ in range(rng.choice([1, 1, 2, 2, 3])):
        parts.append(_join(rng, _clause(rng, positive)))
    if rng.random() < 0.3:
        closer = rng.choice(POSITIVE_CLOSERS if positive else NEGATIVE_CLOSERS)
        parts.append(_join(rng, closer.split()))
    separator = rng.choice([" ", ". ", ".. ", "! ", " ㅎㅎ "])
    return separator.join(parts) + rng.choice(["", ".", "!", "~", "..", " ㅎ"])


def write(path: Path, rows: int, seed: int, first_id: int) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "document", "label"])
        for i in range(rows):
            label = rng.random() < 0.5
            writer.writerow([first_id + i, review(rng, label), int(label)])


if __name__ == "__main__":
    write(HERE / "train.tsv", 400, seed=11, first_id=9_100_000)
    write(HERE / "test.tsv", 300, seed=29, first_id=9_200_000)
