"""The monitoring shipped in deploy/: promtool checks the Prometheus config and alert rules (and
runs their unit tests), and a real Prometheus server scrapes two DAQ lines, each an
``agetdaq run`` against its own emulator on 127.0.0.1; its query API returns both lines' series,
the alert rules load, and every query of the Grafana dashboard evaluates."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import free_tcp_port, free_udp_port

from agetdaq.readout.acquisition.metrics import AGETDAQ_METRICS

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "agetdaq-dashboard.json"
PY = [sys.executable, "-m", "agetdaq"]

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
NO_PROMTOOL = (
    "promtool not installed (Debian package `prometheus`; `make test` installs it as root)"
)
NO_PROMETHEUS = "prometheus not installed (Debian package `prometheus`)"


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_dashboard_queries_use_the_exported_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["templating"]["list"][0]["query"]["query"] == "label_values(agetdaq_info, line)"
    exprs = _dashboard_exprs()
    assert len(exprs) >= 8
    names = set(AGETDAQ_METRICS) | {"up"}
    for expr in exprs:
        used = {w for w in names if w + "{" in expr}
        assert used, f"no exported metric in {expr!r}"
        assert '$line"' in expr  # every panel follows the line selector


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_checks_config_rules_and_their_unit_tests() -> None:
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "agetdaq-alerts.yml"],
        ["test", "rules", "agetdaq-alerts-test.yml"],
    ):
        done = subprocess.run(
            [PROMTOOL, *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout


def _board_answers(port: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        while time.monotonic() < end:
            s.sendto(b"version", ("127.0.0.1", port))
            try:
                if s.recv(4096):
                    return True
            except OSError:
                time.sleep(0.2)
    return False


def _query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    reply = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


def _stop(children: list[subprocess.Popen]) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in reversed(children):
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.skipif(PROMETHEUS is None, reason=NO_PROMETHEUS)
def test_prometheus_scrapes_two_daq_lines(tmp_path) -> None:
    log = (tmp_path / "children.log").open("w")
    children: list[subprocess.Popen] = []
    targets = []
    try:
        for k in (1, 2):
            bec, metrics = free_udp_port(), free_tcp_port()
            children.append(
                subprocess.Popen(
                    [*PY, "emulate", "--port", str(bec), "--seed", str(k)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            settings = tmp_path / f"line-{k}.toml"
            settings.write_text(
                f'[daq]\nbec = "127.0.0.1:{bec}"\ndata_dir = "{tmp_path / f"data-{k}"}"\n'
                f'detector = "line-{k}"\nmetrics_port = {metrics}\nmetrics_bind = "127.0.0.1"\n'
            )
            targets.append((bec, metrics, settings))
        for bec, _, settings in targets:
            assert _board_answers(bec, 120.0), (tmp_path / "children.log").read_text()
            run = [*PY, "run", "--config", str(settings), "--seconds", "60"]
            children.append(subprocess.Popen(run, stdout=log, stderr=subprocess.STDOUT))
        web = free_tcp_port()
        scrape = "\n".join(
            f'      - targets: ["127.0.0.1:{m}"]\n        labels:\n          line: line-{k}'
            for k, (_, m, _) in enumerate(targets, 1)
        )
        shutil.copy(PROM_DIR / "agetdaq-alerts.yml", tmp_path)
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files:\n  - agetdaq-alerts.yml\n"
            f"scrape_configs:\n  - job_name: agetdaq\n    static_configs:\n{scrape}\n"
        )
        children.append(
            subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{web}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        base = f"http://127.0.0.1:{web}"
        want = {"line-1", "line-2"}
        end = time.monotonic() + 120.0
        lines: set[str] = set()
        while time.monotonic() < end:
            try:
                rows = _query(base, "sum by (line) (agetdaq_events_total) > 0")
                lines = {r["metric"]["line"] for r in rows}
                if lines == want:
                    break
            except OSError:
                pass
            time.sleep(1.0)
        assert lines == want, (tmp_path / "children.log").read_text()[-3000:]
        info = _query(base, "agetdaq_info")
        assert {(r["metric"]["line"], r["metric"]["detector"]) for r in info} == {
            ("line-1", "line-1"),
            ("line-2", "line-2"),
        }
        assert {r["metric"]["line"] for r in _query(base, 'up{job="agetdaq"} == 1')} == want
        running = _query(base, 'agetdaq_run_state{state="running"} == 1')
        assert {r["metric"]["line"] for r in running} == want
        for expr in _dashboard_exprs():  # every panel of the dashboard evaluates
            _query(base, expr.replace("$line", ".*"))
        rules = json.loads(urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5).read())
        loaded = [r for g in rules["data"]["groups"] for r in g["rules"]]
        assert len(loaded) == 8 and all(r["health"] != "err" for r in loaded)
    finally:
        _stop(children)
        log.close()
