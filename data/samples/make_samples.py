"""Write the bundled sample reviews (run from the project root: python data/samples/make_samples.py).

The reviews are composed from phrases written for this project, with a fixed seed, so the
files are reproducible. They are meant for `make demo` and the tests, not for judging a model.
"""

import csv
import gzip
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
SUBJECTS = ["The film", "This movie", "The sequel", "The director's new picture", "This documentary",
            "The series finale", "The remake", "This thriller", "The animated feature", "The comedy"]
POSITIVE = ["was a delight from start to finish", "kept me smiling for days", "is beautifully shot",
            "has a moving, honest script", "features a wonderful lead performance",
            "earns every one of its tears", "is clever, warm and funny", "left the whole room cheering",
            "is the best thing I have seen this year", "has a score I still hum",
            "rewards a second viewing", "is a small masterpiece"]
NEGATIVE = ["was a chore to sit through", "dragged on far too long", "is badly edited",
            "has a lazy, predictable script", "wastes a talented cast", "made me check my watch",
            "is loud, dull and empty", "left the whole room yawning",
            "is the worst thing I have seen this year", "has dialogue that made me wince",
            "never finds its footing", "is a tedious mess"]
POS_EXTRA = ["I would gladly watch it again.", "Highly recommended.", "A real gem.",
             "Bring your friends.", "Ten out of ten from me."]
NEG_EXTRA = ["I want my evening back.", "Avoid it.", "A real letdown.",
             "Not worth the ticket.", "One star is generous."]
NEUTRAL = ["I saw it on a rainy Sunday.", "The cinema was half full.", "It runs about two hours.",
           "My sister picked it.", "The trailer gave away little."]


def review(rng: random.Random, positive: bool) -> str:
    main, extra = (POSITIVE, POS_EXTRA) if positive else (NEGATIVE, NEG_EXTRA)
    parts = [f"{rng.choice(SUBJECTS)} {rng.choice(main)}.", rng.choice(NEUTRAL)]
    if rng.random() < 0.6:
        parts.append(f"It also {rng.choice(main)}.")
    parts.append(rng.choice(extra))
    rng.shuffle(parts[1:])
    return " <br /><br />".join(parts) if rng.random() < 0.3 else " ".join(parts)


def rows(rng: random.Random, prefix: str, count: int):
    for n in range(count):
        positive = rng.random() < 0.5
        yield {"review_id": f"{prefix}-{n:04d}", "text": review(rng, positive), "label": int(positive)}


def main() -> None:
    rng = random.Random(20261123)
    (HERE / "labeled").mkdir(exist_ok=True)
    (HERE / "incoming").mkdir(exist_ok=True)
    labeled = list(rows(rng, "sample-train", 600))
    with open(HERE / "labeled" / "reviews-a.csv", "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["review_id", "review", "sentiment"])  # the common IMDB CSV naming
        for row in labeled[:400]:
            writer.writerow([row["review_id"], row["text"], "positive" if row["label"] else "negative"])
    with open(HERE / "labeled" / "reviews-b.jsonl", "w", encoding="utf-8") as out:
        for row in labeled[400:]:
            out.write(json.dumps(row) + "\n")
    unlabeled = [{k: v for k, v in row.items() if k != "label"} for row in rows(rng, "sample-new", 120)]
    with open(HERE / "incoming" / "new-reviews.csv", "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["review_id", "text"])
        writer.writeheader()
        writer.writerows(unlabeled[:80])
    with gzip.open(HERE / "incoming" / "more-reviews.jsonl.gz", "wt", encoding="utf-8") as out:
        for row in unlabeled[80:]:
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
