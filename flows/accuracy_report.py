"""What a ``measure-accuracy`` run shows in Prefect: each version's production accuracy
beside its gate accuracy, as a table and a picture (``production-accuracy``)."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.artifact_tables import figure, markdown_image, percent
from tasks.late_labels import Measurement, script_label


def version_rows(measured: Measurement, champion: str | None) -> list[dict]:
    """Per version (the champion first): a row for all its late-labeled reviews, one per
    main script and one for its latest week, each beside the gate accuracy it is judged
    against and whether it dropped (``too few``: fewer reviews than are judged)."""
    limits = measured.limits
    order = sorted(measured.versions, key=lambda v: (v != champion, v))
    rows = []
    for version in order:
        found = measured.versions[version]
        name = version + (" (champion)" if version == champion else "")
        figures = [("all reviews", found, found["gate_accuracy"], bool(
            found["dropped"] and found["dropped"][0]["where"] == "overall"))]
        figures += [(f"{script_label(s['script'])} reviews", s, s["gate_accuracy"], s["dropped"])
                    for s in found["scripts"]]
        if found["weeks"]:
            week = found["weeks"][-1]
            figures.append((f"latest week, {week['week']}", week, found["gate_accuracy"],
                            week["dropped"]))
        for where, figure_of, gate, dropped in figures:
            rows.append({"version": name, "reviews of": where,
                         "reviews": f"{figure_of['rows']:,}",
                         "accuracy": figure(figure_of["accuracy"]),
                         "gate accuracy": figure(gate),
                         "dropped": "yes" if dropped else (
                             "too few" if figure_of["rows"] < limits.min_rows else "-")})
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
