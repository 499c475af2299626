"""Several detector lines: two emulated BECs (card ids 3 and 5), two acquisition engines with their
own data directories and streams, one subscriber that tells the streams apart by ``source``."""

from __future__ import annotations

import time

import numpy as np
import pytest

from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.acquisition.engine import Acquisition
from agetdaq.readout.acquisition.runlog import RunLog
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.simulation.emulator.scenario import Scenario
from agetdaq.readout.simulation.emulator.server import Emulator
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.transport.stream import Subscriber

pytestmark = pytest.mark.network
CARDS = {"line-a": 3, "line-b": 5}


def _scenario() -> Scenario:
    data = Scenario.load("default").as_dict()
    data.pop("path", None)
    data["source"] = {"fe55": data.pop("fe55"), "muon": data.pop("muon")}
    data["source"]["fe55"].update(rate_hz=200.0, area="full")
    data["source"]["muon"]["rate_hz"] = 20.0
    return Scenario.from_dict(data, "multi")


def _mapping_for(card: int, path) -> str:
    """The shipped BabyIAXO mapping moved to another card id (one mapping file per line)."""
    lines = []
    for line in StripMapping.default().to_text().splitlines():
        fields = line.split(",")
        if line and not line.startswith("#") and fields[0].isdigit():
            fields[0] = str(card)
        lines.append(",".join(fields))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_two_lines_keep_their_data_apart_and_share_one_subscriber(tmp_path):
    emus, acqs = {}, {}
    sub = None
    try:
        for name, card in CARDS.items():
            emus[name] = Emulator(_scenario(), port=0, card_id=card, seed=card).start()
            settings = Settings().with_daq(
                bec=f"127.0.0.1:{emus[name].address[1]}",
                data_dir=str(tmp_path / name),
                detector=name,
                mapping=_mapping_for(card, tmp_path / f"{name}.csv"),
                store_waveforms="all",
            )
            acqs[name] = Acquisition(settings, publish="tcp://127.0.0.1:*")
        first, second = (a.publisher.address for a in acqs.values())
        sub = Subscriber(first, topics=("status", "summary"))
        sub.socket.connect(second)
        for acq in acqs.values():
            acq.configure("run")
        for acq in acqs.values():
            acq.start_run("background", "two lines", events=120, seconds=30)
        by_source: dict[str, list] = {name: [] for name in CARDS}
        end = time.monotonic() + 45
        while any(a.state == "running" for a in acqs.values()) and time.monotonic() < end:
            for acq in acqs.values():
                if acq.state == "running":
                    acq.poll()
            msg = sub.recv(20)
            if msg is not None:
                by_source[msg.header["source"]].append(msg)
        for _ in range(50):  # the final status messages
            msg = sub.recv(20)
            if msg is not None:
                by_source[msg.header["source"]].append(msg)
        paths = {name: acq.run.path for name, acq in acqs.items()}
        states = {name: acq.state for name, acq in acqs.items()}
    finally:
        for acq in acqs.values():
            acq.close()
        for emu in emus.values():
            emu.stop()
        if sub is not None:
            sub.close()

    assert states == {"line-a": "configured", "line-b": "configured"}
    for name, card in CARDS.items():
        assert paths[name].startswith(str(tmp_path / name))
        with RunFile(paths[name]) as f:
            assert f.n_events >= 120 and f.metadata()["detector"] == name
            ch = f.channels()
            assert set(np.unique(ch["card"]).tolist()) == {card}  # its own card id only
            assert (ch["strip"] >= 0).any()  # the per-line mapping finds its strips
        events = [r["event"] for r in RunLog(tmp_path / name).records()]
        assert events == ["allocate", "start", "end"]
        msgs = by_source[name]
        status = [m for m in msgs if m.topic == "status"]
        assert status and all(
            m.header["board"].endswith(str(emus[name].address[1])) for m in status
        )
        assert any(m.topic == "summary" and m.header.get("n", 0) > 0 for m in msgs)
    assert sub.gaps == 0  # sequence numbers are counted per (source, topic)
