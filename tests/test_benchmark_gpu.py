"""The gpu section (benchmarks/sections/gpu.py): on a machine without a GPU it says "no
GPU" and the run passes; its measurement (the champion loaded and timed per device in
interleaved rounds) runs on the devices this machine has; its ratios to the peers come
from the peers section's figures; its report renders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.common import QUICK, Bench
from benchmarks.report import write_reports
from benchmarks.run import run_section
from benchmarks.sections import gpu

FIXTURE_MODEL = "fixtures/models-0.1/ngram-marks.keras"


def peers_figures() -> dict:
    english = [{"model": "reviewflow", "kind": "product", "reviews_per_second": 4000.0},
               {"model": "fastText", "kind": "peer", "reviews_per_second": 2500.0},
               {"model": "scikit-learn", "kind": "peer", "reviews_per_second": 1000.0},
               {"model": "absent", "kind": "peer", "error": "not installed"}]
    korean = [{"model": "scikit-learn char", "kind": "peer", "reviews_per_second": 90000.0}]
    return {"languages": [{"language": "English (IMDB)", "results": english},
                          {"language": "Korean (NSMC-style)", "results": korean}]}


def test_without_a_gpu_the_section_says_so_and_the_run_passes(tmp_path):
    from tasks.model import compute_device

    if compute_device().startswith("GPU"):
        pytest.skip("this machine has a GPU: the section measures instead")
    section = run_section("gpu", Bench(quick=True, sizes=QUICK))
    assert section["status"] == "not run"
    reason = section["data"]["reason"]
    assert reason.startswith("no GPU: ") and 'make bench SECTIONS="peers gpu"' in reason
    results = {"generated_at": "now", "command": "python -m benchmarks.run --sections gpu",
               "quick": True, "seconds": 1.0, "sections": {"gpu": section},
               "machine": {"cpu_model": "x", "cpu_cores": 2, "cpu_cores_usable": 2,
                           "memory_gib": 1.0, "os": "linux",
                           "load_average_at_start": (0.0, 0.0, 0.0), "versions": {}}}
    write_reports(results, tmp_path / "results.json", tmp_path / "BENCHMARKS.md")
    assert f"Not run: {reason}" in (tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8")


def test_the_champion_is_timed_on_each_device_in_interleaved_rounds():
    from conftest import PROJECT

    texts = np.array([f"a fine film number {i}, loved it" for i in range(300)], dtype=object)
    got = gpu.device_rates(PROJECT / "tests" / FIXTURE_MODEL, texts, 128,
                           {"first": "/CPU:0", "second": None}, rounds=2)
    assert got["rows"] == 300 and got["rounds"] == 2
    assert {k: len(v) for k, v in got["seconds_rounds"].items()} == {"first": 2, "second": 2}
    assert all(v > 0 for v in got["reviews_per_second"].values())
    assert len(got["load_average_after_rounds"]) == 2


def test_the_ratios_are_to_the_fastest_english_peer_and_to_the_cpu():
    got = gpu.peer_comparison({"GPU": 20000.0, "CPU": 4000.0}, peers_figures())
    assert got["fastest_peer"] == "fastText"
    assert got["to_fastest_peer"] == {"GPU": 8.0, "CPU": 1.6}
    assert got["to_cpu"] == {"GPU": 5.0, "CPU": 1.0}
    assert gpu.peer_comparison({"GPU": 1.0, "CPU": 1.0}, None)["to_fastest_peer"] == {}


def test_a_gpu_run_renders_devices_ratios_and_section_two():
    from conftest import PROJECT

    committed = json.loads((PROJECT / "benchmarks" / "results.json").read_text())
    data = {"device": "GPU:0 (NVIDIA H100)", "champion": "v0001",
            "compared": {"rows": 25000, "batch": 1024, "rounds": 3, "devices": gpu.DEVICES,
                         "reviews_per_second": {"GPU": 20000.0, "CPU": 4000.0},
                         "seconds_rounds": {"GPU": [1.25] * 3, "CPU": [6.25] * 3},
                         "load_average_after_rounds": [1.0, 1.1, 1.2]},
            "peers": gpu.peer_comparison({"GPU": 20000.0, "CPU": 4000.0}, peers_figures()),
            "throughput": committed["sections"]["throughput"]["data"], "targets": []}
    rendered = "\n".join(gpu.render(data))
    assert "| GPU (`as reviewflow score places it`) | 20,000.0 | 5 | 8 |" in rendered
    assert "| CPU (`/CPU:0`) | 4,000.0 | 1 | 1.6 |" in rendered
    assert "Fastest peer (peers section, English, same texts, CPU): fastText" in rendered
    assert "bare `predict_scores` on the in-memory texts" in rendered  # section 2's table
