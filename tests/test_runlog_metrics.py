"""Run log numbering, path confinement, and the Prometheus endpoint."""

from __future__ import annotations

import urllib.request

import pytest

from agetdaq.readout.acquisition.metrics import DaqMetrics
from agetdaq.readout.acquisition.runlog import RunLog, confine


def test_run_numbers_increase_and_survive_a_cut_line(tmp_path):
    log = RunLog(tmp_path)
    assert log.next_run_number() == 1
    log.append({"event": "start", "run": 1})
    log.append({"event": "end", "run": 1})
    with open(log.path, "a") as f:
        f.write('{"event": "start", "ru')  # a crash mid-line
    assert log.next_run_number() == 2
    assert log.run_path(12, "background").name == "R00012_background.h5"


def test_confine_rejects_escapes(tmp_path):
    assert confine(tmp_path, "a/b.h5") == (tmp_path / "a/b.h5").resolve()
    for bad in ("../x.h5", "/etc/passwd", "a/../../x"):
        with pytest.raises(ValueError, match="leaves the data directory"):
            confine(tmp_path, bad)


def test_metrics_endpoint_serves_feminos_names(tmp_path, tcp_port):
    m = DaqMetrics(str(tmp_path))
    m.start(tcp_port)
    try:
        m.update(
            {
                "mb_per_s": 12.5,
                "events_per_s": 100,
                "run_number": 7,
                "events": 42,
                "state": "running",
                "losses": {"socket": {"ring_full": 3}},
            }
        )
        body = urllib.request.urlopen(f"http://127.0.0.1:{tcp_port}/metrics", timeout=5).read()
    finally:
        m.stop()
    text = body.decode()
    assert "daq_speed_mb_per_sec_now 12.5" in text
    assert "run_number 7.0" in text
    assert "number_of_events 42.0" in text
    assert 'agetdaq_lost_total{kind="ring_full",stage="socket"} 3.0' in text
    assert 'agetdaq_run_state{state="running"} 1.0' in text
    assert "free_disk_space_gb" in text
