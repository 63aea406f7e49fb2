"""How bench section 5 cuts a run into stages (benchmarks/sections/orchestration.stage_seconds)."""

from __future__ import annotations

from datetime import datetime

from benchmarks.sections.orchestration import MILESTONES, stage_seconds

RUN = """22:00:02.500 | INFO    | Flow run 'x' - Beginning flow run 'x' for flow 'score-reviews'
22:00:06.000 | INFO    | Flow run 'x' - scoring on CPU
22:00:06.300 | INFO    | Task run 'load-champion-1' - Finished in state Completed()
22:00:06.400 | INFO    | Task run 'score-shard-1' - Finished in state Completed()
22:00:06.500 | INFO    | Task run 'score-shard-2' - Finished in state Completed()
22:00:07.000 | INFO    | Flow run 'x' - Finished in state Completed()
"""


def test_stages_run_from_start_to_each_milestone_to_exit_and_add_up():
    started = datetime(2026, 11, 29, 22, 0, 0).timestamp()
    stages = stage_seconds(RUN, started, started + 7.1)
    assert list(stages) == [name for name, _, _ in MILESTONES]
    # The file is committed when its last shard is: 06.500, not 06.400.
    assert stages == {"flow run begins": 2.5, "device known": 3.5, "champion loaded": 0.3,
                      "file committed": 0.2, "flow run finished": 0.5, "process exit": 0.1}
    assert abs(sum(stages.values()) - 7.1) < 1e-6


def test_a_run_without_a_milestone_has_no_stages():
    started = datetime(2026, 11, 29, 22, 0, 0).timestamp()
    without_device = "".join(line + "\n" for line in RUN.splitlines() if "scoring on" not in line)
    assert stage_seconds(without_device, started, started + 7.1) is None


def test_a_run_across_midnight_counts_the_next_day():
    started = datetime(2026, 11, 29, 23, 59, 59).timestamp()
    shifted = RUN.replace("22:00:0", "00:00:0")
    stages = stage_seconds(shifted, started, started + 8.1)
    assert stages["flow run begins"] == 3.5 and stages["process exit"] == 0.1
