"""What a ``measure-accuracy`` run shows in Prefect: each version's production accuracy
beside its gate accuracy, as a table and a picture (``production-accuracy``)."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.artifact_tables import figure, markdown_image, percent
from tasks.late_labels import Measurement, script_label


def version_rows(measured: Measurement, champion: str | None) -> list[dict]:
    """One row per version, the champion first: the figures a reader compares, short."""
    order = sorted(measured.versions, key=lambda v: (v != champion, v))
    rows = []
    for version in order:
        found = measured.versions[version]
        rows.append({"version": version + (" (champion)" if version == champion else ""),
                     "dropped": ", ".join(d["where"] for d in found["dropped"]) or "-",
                     "reviews": f"{found['rows']:,}",
                     "accuracy": figure(found["accuracy"]),
                     "gate accuracy": figure(found["gate_accuracy"]),
                     "weeks": len(found["weeks"]),
                     "by script": ", ".join(f"{script_label(s['script'])} {figure(s['accuracy'])}"
                                            for s in found["scripts"][:2])})
    return rows


def publish_accuracy(measured: Measurement, champion: str | None) -> None:
    """The table of versions and, when there are any, the picture of their weeks."""
    if not measured.versions:
        create_markdown_artifact(
            key="production-accuracy",
            markdown="# Production accuracy\n\nNo late label matches a scored review yet: "
                     f"{measured.join.labels.table.num_rows:,} labeled reviews in labeled/, "
                     f"{measured.join.scored_rows_read:,} scored rows read.\n",
            description="Each model version's accuracy on late labels")
        return
    create_table_artifact(key="production-accuracy-versions",
                          table=version_rows(measured, champion),
                          description="Accuracy on late labels beside the gate accuracy, "
                                      "per model version (docs/monitoring.md)")
    from tasks.late_labels.plots import plot_production_accuracy

    png = plot_production_accuracy(measured.versions, champion, measured.limits)
    limits = measured.limits
    create_markdown_artifact(
        key="production-accuracy",
        markdown=f"# Production accuracy\n\nEach version's accuracy on the late labels of "
                 f"its scored reviews, per week, beside its gate accuracy (dashed); a "
                 f"figure on at least {limits.min_rows:,} reviews more than "
                 f"{percent(limits.max_drop)} below it counts as dropped.\n\n"
                 + markdown_image(png, "production accuracy per week"),
        description="Each model version's accuracy on late labels")
