"""Section 6, ``gpu``: the champion's scoring on a GPU against its CPU, and against the
peers, when TensorFlow sees a GPU; otherwise "no GPU", and the section passes.

On a host with a CUDA device (a scoring pool worker, deployments/GPU.md) it needs no
change: it loads the champion twice, once placed as ``reviewflow score`` places it
(TensorFlow's own placement: the GPU) and once with its variables and serving function
on ``/CPU:0`` (loaded and traced under that device scope), and times
bare ``predict_scores`` of both on the same texts as section 2 (the IMDB file, after a
warm-up) in interleaved rounds (``common.interleaved_seconds``); then section 2's own
``run`` and ``render`` on the GPU (its figures reused when section 2 already ran on that
GPU in this run); then the ratios to the peers: the English figures of the ``peers``
section, which scores the same texts, reused when it ran earlier in this run, else run
here through its ``run``. Target: the champion on the GPU at least
``PEER_SPEED_RATIO`` times the fastest peer's reviews/s.
"""

from __future__ import annotations

import statistics

from benchmarks.common import (
    PEER_SPEED_RATIO,
    Bench,
    interleaved_seconds,
    log,
    md_table,
    rate,
    render_targets,
    target,
    texts_of,
)
from benchmarks.sections import peers, throughput

TITLE = "6. GPU"
NEEDS_SHARED_DATA = False  # a host without a GPU says so, shared data or not
# Where each copy of the champion runs: the GPU as `reviewflow score` uses it (TensorFlow's
# own placement, no device scope: None), and the CPU, forced.
DEVICES = {"GPU": None, "CPU": "/CPU:0"}
ROUNDS = 3
NO_GPU = "no GPU"


def no_gpu_reason(device: str) -> str:
    return (f"{NO_GPU}: TensorFlow sees none on this machine (compute_device() = {device!r}). "
            "On a host with a CUDA device, `make bench SECTIONS=\"peers gpu\"` measures the "
            "champion there on GPU and CPU beside the peers (deployments/GPU.md).")


def device_rates(model_path, texts, batch: int, devices: dict[str, str | None],
                 rounds: int = ROUNDS) -> dict:
    """Bare ``predict_scores`` of the model at ``model_path`` on each of ``devices``
    (label: TensorFlow device name, or None for TensorFlow's own placement), the same
    texts, interleaved rounds."""
    from contextlib import nullcontext

    from tasks.model import load_model, predict_scores
    from tasks.model.backend import tf

    def scope(device: str | None):
        return nullcontext() if device is None else tf.device(device)

    def on(device: str | None, model):
        def score(batch_texts):
            with scope(device):
                return predict_scores(model, batch_texts, batch)
        return score

    scorers = {}
    for label, device in devices.items():
        with scope(device):  # its variables, and its serving function traced, there
            model = load_model(model_path)
        scorers[label] = on(device, model)
        scorers[label](texts[:batch])  # warm-up: traces under the device scope
    seconds, loads = interleaved_seconds(scorers, texts, rounds)
    return {"rows": len(texts), "batch": batch, "rounds": rounds, "devices": devices,
            "seconds_rounds": {k: [round(s, 3) for s in v] for k, v in seconds.items()},
            "reviews_per_second": {k: rate(len(texts), statistics.median(v))
                                   for k, v in seconds.items()},
            "load_average_after_rounds": [round(x, 2) for x in loads]}


def peer_comparison(rates: dict[str, float], peer_figures: dict | None) -> dict:
    """Each device's reviews/s over the fastest English peer's (same texts), and over the
    CPU's."""
    english = next((f for f in (peer_figures or {}).get("languages", [])
                    if f["language"].startswith("English")), None)
    found = [r for r in (english or {}).get("results", [])
             if r.get("kind") == "peer" and "error" not in r]
    fastest = max(found, key=lambda r: r["reviews_per_second"], default=None)
    return {"fastest_peer": None if fastest is None else fastest["model"],
            "fastest_peer_reviews_per_second":
                None if fastest is None else fastest["reviews_per_second"],
            "to_fastest_peer": {k: round(v / fastest["reviews_per_second"], 3)
                                for k, v in rates.items()} if fastest else {},
            "to_cpu": {k: round(v / rates["CPU"], 3) for k, v in rates.items()}
            if rates.get("CPU") else {}}


def run(bench: Bench) -> dict:
    """The champion on GPU and CPU, section 2 on the GPU, the ratios to the peers; or why
    not (no GPU)."""
    from tasks.model import compute_device
    from tasks.settings import Settings

    device = compute_device()
    if not device.startswith("GPU"):
        return {"status": "not run", "device": device, "reason": no_gpu_reason(device)}
    texts, batch = texts_of(bench.reviews()), Settings().predict_batch_size
    champion = bench.champion_ref()
    log(f"gpu: {device}: the champion on {', '.join(DEVICES)} over {len(texts):,} texts")
    devices = device_rates(champion.location, texts, batch, DEVICES)
    if bench.throughput is not None and bench.throughput["device"] == device:
        log(f"gpu: section 2 already ran on {device} in this run; reporting it here")
        figures = bench.throughput
    else:
        log(f"gpu: {device}: running the throughput section on it")
        figures = throughput.run(bench)
    if bench.peers is None:
        log("gpu: the peers section has not run in this run; running it")
        peers.run(bench)
    comparison = peer_comparison(devices["reviews_per_second"], bench.peers)
    gpu_to_peer = comparison["to_fastest_peer"].get("GPU")
    checks = [target(f"champion on {device}: scoring reviews/s at least "
                     f"{PEER_SPEED_RATIO} times the fastest peer's (English)",
                     gpu_to_peer, PEER_SPEED_RATIO, True, "x")]
    return {"device": device, "champion": champion.version, "compared": devices,
            "peers": comparison, "throughput": figures, "targets": checks}


def render(data: dict) -> list[str]:
    compared, comparison = data.get("compared"), data.get("peers", {})
    lines = [f"Device: {data['device']}.", ""]
    if compared:
        loads = ", ".join(f"{x:.2f}" for x in compared["load_average_after_rounds"])
        peer = comparison.get("fastest_peer")
        lines += [f"Champion `{data['champion']}`, bare `predict_scores` (batch "
                  f"{compared['batch']}) over the same {compared['rows']:,} texts on each "
                  f"device, {compared['rounds']} interleaved rounds (median); load average "
                  f"after each round: {loads}. Fastest peer (peers section, English, same "
                  f"texts, CPU): {peer or 'none measured'}"
                  + (f", {comparison['fastest_peer_reviews_per_second']:,.0f} reviews/s."
                     if peer else "."), ""]
        lines += md_table(["device", "reviews/s", "x CPU", "x fastest peer"],
                          [[f"{label} (`{name or 'as reviewflow score places it'}`)",
                            compared["reviews_per_second"][label],
                            comparison.get("to_cpu", {}).get(label),
                            comparison.get("to_fastest_peer", {}).get(label)]
                           for label, name in compared["devices"].items()])
        lines += [""] + render_targets(data.get("targets", [])) + ["", "Section 2 on the GPU:",
                                                                   ""]
    return lines + throughput.render(data["throughput"])
