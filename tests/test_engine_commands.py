"""Run control served beside the engine (acquisition/commands.py + transport ControlService): the
real acquisition against the emulator; the control thread answers while the engine thread starts
and stops runs; long commands are acknowledged, refusals and quick ones answered at once."""

from __future__ import annotations

import threading
import time

import pytest

from agetdaq.readout.acquisition.commands import EngineCommands
from agetdaq.readout.acquisition.engine import Acquisition
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.simulation.emulator.server import Emulator
from agetdaq.readout.transport.control import ControlClient, ControlService

pytestmark = [pytest.mark.network]


def _until(client: ControlClient, state: str, limit_s: float = 60.0) -> dict:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        st = client.request("status")
        if st.get("state") == state:
            return st
        time.sleep(0.05)
    raise AssertionError(f"state {state!r} not reached: {st}")


def test_commands_are_acknowledged_and_carried_out_by_the_engine_thread(tmp_path):
    emu = Emulator("calibration", port=0, seed=6).start()
    settings = Settings().with_daq(bec=f"127.0.0.1:{emu.address[1]}", data_dir=str(tmp_path))
    acq = Acquisition(settings)
    commands = EngineCommands(acq)
    service = ControlService("tcp://127.0.0.1:*", commands.handle).start()
    stop = threading.Event()

    def engine() -> None:
        while not stop.is_set():
            commands.run_pending(0.05)
            acq.poll()

    thread = threading.Thread(target=engine, daemon=True)
    thread.start()
    client = ControlClient(service.address, timeout_ms=10000)
    try:
        assert client.request("status")["state"] == "idle"
        started = client.request("start", run_type="background", comment="commands")
        assert started["ok"], started
        if started.get("pending"):  # acknowledged before the run is up
            assert started["pending"] == "start" and started["state"] == "configuring"
        st = _until(client, "running")
        assert st["run_type"] == "background"
        again = client.request("start", run_type="background")
        assert again["ok"] is False and "already running" in again["error"]
        masked = client.request("mask", strips=[3, 4], wait=True)  # quick, but not on a loaded host
        assert masked["ok"] and "pending" not in masked and masked["masked"] == [3, 4]
        stopped = client.request("stop", wait=True)
        assert stopped["ok"] and stopped["state"] == "configured" and "pending" not in stopped
        assert client.request("stop")["ok"] is False  # nothing to stop: refused at once
    finally:
        client.close()
        stop.set()
        thread.join(10)
        service.close()
        acq.close()
        emu.stop()
