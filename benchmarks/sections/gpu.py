"""Section 6, ``gpu``: section 2 (``throughput``) on a GPU, when TensorFlow sees one;
otherwise why it was not run. It runs section 2's own ``run`` and ``render``; when
section 2 already ran on that GPU in this run, its figures are reported here."""

from __future__ import annotations

from benchmarks.common import Bench, log
from benchmarks.sections import throughput

TITLE = "6. GPU"
NEEDS_SHARED_DATA = False  # a host without a GPU says so, shared data or not


def run(bench: Bench) -> dict:
    """Section 2 on a GPU, when TensorFlow sees one; otherwise why it was not run."""
    from tasks.model import compute_device

    device = compute_device()
    if not device.startswith("GPU"):
        return {"status": "not run", "device": device,
                "reason": f"TensorFlow sees no GPU on this machine (compute_device() = "
                          f"{device!r}; this benchmark machine has none). On a GPU host "
                          "(`pip install .[gpu]` or the GPU worker of deployments/), "
                          "`make bench` runs section 2 there and reports it here."}
    if bench.throughput is not None and bench.throughput["device"] == device:
        log(f"gpu: section 2 already ran on {device} in this run; reporting it here")
        return {"device": device, "throughput": bench.throughput}
    log(f"gpu: {device}: running the throughput section on it")
    return {"device": device, "throughput": throughput.run(bench)}


def render(data: dict) -> list[str]:
    return [f"Device: {data['device']}.", ""] + throughput.render(data["throughput"])
