"""Which input columns mean what: a plain model shared by the readers, the shard planner
and the settings (which carry the user's choice of names)."""

from __future__ import annotations

from pydantic import BaseModel


class ColumnMapping(BaseModel):
    """Which input column names mean review id, text and label.

    The first name found in a file wins; names are matched case-insensitively.
    """

    review_id: list[str] = ["review_id", "id", "reviewid", "review id"]
    text: list[str] = ["text", "review", "document", "content", "body", "comment"]
    label: list[str] = ["label", "sentiment", "polarity", "target"]
    # What a review is about (a movie, a product). Labeled files that carry one are split
    # by it for training, so the held-out figures measure reviews of unseen items, as a
    # new batch will be. Empty: split by review id. Scoring ignores it.
    group: list[str] = ["movie_id", "product_id", "item_id"]
    positive_labels: list[str] = ["1", "pos", "positive", "true", "yes"]
    negative_labels: list[str] = ["0", "neg", "negative", "false", "no"]
