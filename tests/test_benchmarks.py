"""benchmarks/ keeps its rule (benchmarks/README.md): every section one registered module
with the same parts, the list of sections in one place, nothing imported from tests/,
``reviewflow`` run with ``--json`` and read from its run summary; and the committed
report still renders from its figures with today's sections."""

from __future__ import annotations

import ast
import json
import shutil

from conftest import PROJECT, SAMPLES
from test_imports import imports_of

from benchmarks.common import SUMMARY_COMMANDS, reviewflow_argv, run_summary
from benchmarks.report import write_reports
from benchmarks.run import main as bench_main
from benchmarks.sections import SECTIONS, section_modules

BENCHMARKS = PROJECT / "benchmarks"
PRODUCT = ("tasks", "flows", "deployments")


def test_every_module_of_sections_is_a_registered_section_with_the_same_parts():
    modules = sorted(p.stem for p in (BENCHMARKS / "sections").glob("*.py")
                     if p.stem != "__init__")
    assert sorted(SECTIONS) == modules and len(set(SECTIONS)) == len(SECTIONS)
    for name, module in section_modules().items():
        assert isinstance(module.TITLE, str) and module.TITLE.strip(), name
        assert isinstance(module.NEEDS_SHARED_DATA, bool), name
        assert callable(module.run) and callable(module.render), name
        assert module.__doc__ and len(module.__doc__.split()) >= 20, f"{name}: say what and how"
    titles = [module.TITLE for module in section_modules().values()]
    assert len(set(titles)) == len(titles)


def test_the_top_of_benchmarks_holds_the_runner_the_report_and_shared_code_only():
    assert sorted(p.stem for p in BENCHMARKS.glob("*.py")) == ["__init__", "common", "report",
                                                                "run"]
    folders = [p.name for p in BENCHMARKS.iterdir()
               if p.is_dir() and not p.name.startswith((".", "__"))]
    assert folders == ["sections"]


def test_the_runner_lists_and_accepts_the_registered_sections(capsys):
    bench_main(["--list"])
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(SECTIONS)
    for line, module in zip(listed, section_modules().values(), strict=True):
        assert line.endswith(module.TITLE)
        assert ("needs shared data" in line) == module.NEEDS_SHARED_DATA


def test_nothing_in_benchmarks_or_the_product_imports_from_tests():
    found = [f"{path.relative_to(PROJECT)} imports {module}"
             for folder in ("benchmarks", *PRODUCT) for path in (PROJECT / folder).rglob("*.py")
             for module in imports_of(path) if module == "tests" or module.startswith("tests.")]
    assert not found


def test_benchmarks_start_reviewflow_only_with_json_for_the_commands_that_report():
    for command in SUMMARY_COMMANDS:
        assert "--json" in reviewflow_argv(command, "--data-dir", "D")
    assert "--json" not in reviewflow_argv("models", "list")
    # Any other way to start the program (its module, its script, Python code handed to
    # an interpreter) would bypass reviewflow_argv.
    found = []
    for path in BENCHMARKS.rglob("*.py"):
        if path == BENCHMARKS / "common.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if ((isinstance(node, ast.Constant) and isinstance(node.value, str)
                 and ("flows.cli" in node.value or node.value == "reviewflow"))
                    or (isinstance(node, ast.Name) and node.id == "REVIEWFLOW")):
                found.append(f"{path.relative_to(PROJECT)}:{node.lineno}")
    assert not found


def test_benchmarks_use_no_private_name_of_the_product():
    found = []
    for path in BENCHMARKS.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(alias.asname or alias.name for alias in node.names
                               if alias.name.startswith(PRODUCT))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PRODUCT):
                found += [f"{path.name} imports {node.module}.{alias.name}"
                          for alias in node.names if alias.name.startswith("_")]
                modules.update(alias.asname or alias.name for alias in node.names)
        found += [f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}"
                  for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id in modules and node.attr.startswith("_")
                  and not node.attr.startswith("__")]
    assert not found


def test_a_run_summary_is_the_whole_standard_output():
    assert run_summary('{"rows_scored": 3}\n', "score") == {"rows_scored": 3}
    assert run_summary("null\n", "score") is None
    try:
        run_summary("\nscored 3 rows from 1 files\n", "reviewflow score")
    except RuntimeError as exc:
        assert "reviewflow score printed no run summary" in str(exc)
    else:
        raise AssertionError("printed lines taken for a run summary")


def test_the_committed_report_renders_from_its_figures_with_todays_sections(tmp_path):
    """BENCHMARKS.md keeps its layout: the committed results.json renders, a heading per
    registered section in order, and every section it holds figures of renders them."""
    results = json.loads((BENCHMARKS / "results.json").read_text(encoding="utf-8"))
    write_reports(results, tmp_path / "results.json", tmp_path / "BENCHMARKS.md")
    rendered = (tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8")
    headings = [line for line in rendered.splitlines() if line.startswith("#")]
    titles = [f"## {module.TITLE}" for module in section_modules().values()]
    assert headings == ["# Benchmarks", "## Targets", *titles]
    committed = [line for line in (PROJECT / "BENCHMARKS.md").read_text(encoding="utf-8")
                 .splitlines() if line.startswith("#")]
    assert [h for h in headings if h in committed] == committed
    sections = rendered.split("\n## ")[2:]
    for name, title in zip(SECTIONS, titles, strict=True):
        body = next(s for s in sections if f"## {s.splitlines()[0]}" == title)
        status = results["sections"].get(name, {}).get("status")
        if status == "ok":
            assert "_Section took" in body and "**Failed**" not in body, name
        elif status is None:
            assert "Not run: not selected" in body, name


def test_the_stage_profile_times_the_files_work_apart_from_loading_the_model(
        tmp_path, trained_models):
    """Section 2's stage table: the model and validator are loaded before the clock
    starts, and what no stage timed is a row of its own, so the rows add up to the wall."""
    from benchmarks.sections.profile import STAGES, profile_scoring
    from benchmarks.sections.throughput import render_stages
    from tasks.scoring.workers import ModelRef
    from tasks.settings import Settings

    (model_file,) = trained_models.glob("versions/*/model.keras")
    reviews = tmp_path / "reviews.csv"
    shutil.copy(next(SAMPLES.glob("*/new-reviews.csv")), reviews)  # the bundled sample
    ref = ModelRef(f"profiled-{tmp_path.name}", model_file)  # a version no test loaded yet
    stages = profile_scoring(reviews, ref, Settings(), tmp_path / "out")
    assert stages["rows"] > 0 and stages["rows_scored"] + stages["rows_rejected"] == stages["rows"]
    assert stages["load_seconds"] > 0
    timed = sum(stages["seconds"][name] for name in STAGES)
    assert abs(timed + stages["other_seconds"] - stages["total_seconds"]) < 0.01
    # A few rows take far less than loading the model and tracing it: the load is outside.
    assert stages["total_seconds"] < stages["load_seconds"]
    table = "\n".join(render_stages(stages))
    assert "in none of the stages above" in table and "outside the file's work" in table
