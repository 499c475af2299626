"""Run log numbering, path confinement, and the Prometheus endpoint."""

from __future__ import annotations

import urllib.request

import pytest

from agetdaq.readout.acquisition.metrics import AGETDAQ_METRICS, DaqMetrics
from agetdaq.readout.acquisition.runlog import RunLog, confine
from agetdaq.readout.acquisition.settings import DaqSettings


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


def _scrape(host: str, port: int) -> str:
    return urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()


def test_metrics_endpoint_serves_feminos_and_agetdaq_names(tmp_path, tcp_port):
    m = DaqMetrics(str(tmp_path), detector="line-a", board="127.0.0.1:1122")
    m.start(tcp_port)
    try:
        m.update(
            {
                "mb_per_s": 12.5,
                "events_per_s": 100,
                "run_number": 7,
                "events": 42,
                "bytes": 1000,
                "state": "running",
                "losses": {"socket": {"ring_full": 3}},
            }
        )
        text = _scrape("127.0.0.1", tcp_port)
    finally:
        m.stop()
    # feminos-daq's names, unchanged
    assert "daq_speed_mb_per_sec_now 12.5" in text
    assert "run_number 7.0" in text
    assert "number_of_events 42.0" in text
    assert "free_disk_space_gb" in text
    # agetdaq_*: counters typed as counters, base units, an info series with the line's labels
    assert "# TYPE agetdaq_lost_total counter" in text
    assert 'agetdaq_lost_total{kind="ring_full",stage="socket"} 3.0' in text
    assert "# TYPE agetdaq_events_total counter" in text and "agetdaq_events_total 42.0" in text
    assert "agetdaq_data_bytes_total 1000.0" in text
    assert 'agetdaq_run_state{state="running"} 1.0' in text
    assert 'agetdaq_info{board="127.0.0.1:1122",detector="line-a",version="' in text
    assert "agetdaq_run_number 7.0" in text and "agetdaq_free_disk_bytes{" in text
    for name in AGETDAQ_METRICS:
        assert f"# TYPE {name} " in text, name


def test_counters_only_go_up_across_runs(tmp_path):
    m = DaqMetrics(str(tmp_path))
    runs = [(10, 2), (25, 2), (30, 5), (4, 1), (9, 1)]  # per-run counts; a new run at (4, 1)
    for events, lost in runs:
        m.update({"events": events, "losses": {"link": {"lost_datagrams": lost}}})
    events = m.registry.get_sample_value("agetdaq_events_total")
    lost = m.registry.get_sample_value(
        "agetdaq_lost_total", {"stage": "link", "kind": "lost_datagrams"}
    )
    assert events == 30 + 9 and lost == 5 + 1
    assert m.registry.get_sample_value("number_of_events") == 9  # feminos-daq's: this run


def test_metrics_bind_address_is_configurable(tmp_path, tcp_port):
    m = DaqMetrics(str(tmp_path))
    m.start(tcp_port, host="127.0.0.2")  # another loopback address: not 127.0.0.1
    try:
        assert "agetdaq_uptime_seconds" in _scrape("127.0.0.2", tcp_port)
        with pytest.raises(OSError):
            _scrape("127.0.0.1", tcp_port)
    finally:
        m.stop()
    assert DaqSettings().metrics_bind == "127.0.0.1"  # loopback unless told otherwise
