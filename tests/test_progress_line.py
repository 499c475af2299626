"""The progress line of ``agetdaq run``: shed events are "not processed online", never losses."""

from __future__ import annotations

from agetdaq.readout.cli.daq_common import progress_line

STATUS = {
    "run_number": 3,
    "state": "running",
    "events": 1000,
    "events_per_s": 50000.0,
    "mb_per_s": 45.0,
    "file_mb": 12.0,
    "queue_fill": 0.25,
    "losses": {"socket": {"kernel_drops": 0}, "writer": {"errors": 0}},
}


def test_shed_events_are_not_processed_online_not_losses() -> None:
    line = progress_line({**STATUS, "not_processed": 120})
    assert "losses 0" in line and "not processed online 120" in line


def test_a_run_with_everything_processed_says_nothing_of_it() -> None:
    line = progress_line({**STATUS, "not_processed": 0})
    assert "not processed" not in line and "losses 0" in line
    lost = {**STATUS, "losses": {"socket": {"kernel_drops": 7}, "writer": {"errors": 1}}}
    assert "losses 8" in progress_line(lost)
