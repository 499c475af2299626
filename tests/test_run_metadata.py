"""Run-file metadata as typed attributes with units (format version 4), status snapshots never cut,
and files of versions 1-3 (byte-string metadata, 2 048-byte status rows) still read alike."""

from __future__ import annotations

import json

import h5py
import numpy as np

from agetdaq.readout import schema as S
from agetdaq.readout.schema import EVENT_DTYPE
from agetdaq.readout.store import layout as L
from agetdaq.readout.store import open_run
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.store.writer import RunWriter

META = {
    "run_number": "12",  # as the engine passes it: typed by the writer
    "run_type": "calibration",
    "comment": "55Fe, mesh 330 V",
    "detector": "babyiaxo",
    "board": "127.0.0.1:1122",
    "start_time": "2026-12-07T16:30:02+0100",
    "software_version": "0.1.0",
    "config": "[daq]\nbec = '127.0.0.1:1122'\n",
    "mapping": "card,chip,aget_channel,axis,strip,position_mm\n0,0,3,X,0,-29.75\n",
    "script": "sca cnt 0x200\n",
    "counters": {"a": 1},
}


def test_plain_h5py_reads_typed_attributes_with_units(tmp_path):
    path = tmp_path / "r.h5"
    with RunWriter(path, EVENT_DTYPE, metadata=META):
        pass
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == S.FORMAT_VERSION == 4
        attrs = dict(f["meta"].attrs)
        assert attrs["run_number"] == 12 and isinstance(attrs["run_number"], np.int64)
        assert attrs["run_type"] == "calibration" and isinstance(attrs["run_type"], str)
        assert attrs["start_time"] == "2026-12-07T16:30:02+01:00"  # ISO 8601
        assert attrs["start_unix"] == 1796657402.0 and attrs["start_unix_units"] == "s"
        assert attrs["board"] == "127.0.0.1:1122" and attrs["comment"] == "55Fe, mesh 330 V"
        config = f["meta/config"]
        assert config.asstr()[()] == META["config"] and config.attrs["content_type"] == "toml"
        assert f["meta/mapping"].attrs["content_type"] == "csv"
        assert json.loads(f["meta/counters"].asstr()[()]) == {"a": 1}
        assert "run_number" not in f["meta"]  # a fact is an attribute, not a byte string


def test_readers_give_the_facts_typed_and_as_text(tmp_path):
    path = tmp_path / "r.h5"
    with RunWriter(path, EVENT_DTYPE, metadata=META):
        pass
    with RunFile(path) as rf:
        facts = rf.attributes()
        text = rf.metadata()
    assert facts["run_number"] == 12 and facts["start_unix"] == 1796657402.0
    assert text["run_number"] == "12" and text["script"] == META["script"]
    assert "start_unix_units" not in text
    with open_run(path) as run:
        assert run.info.run_number == 12 and run.info.start_unix == 1796657402.0
        assert run.info.run_type == "calibration" and run.info.detector == "babyiaxo"


def test_status_snapshots_are_never_cut(tmp_path):
    path = tmp_path / "s.h5"
    big = {"losses": {f"stage{i}": {"kind": i} for i in range(400)}, "note": "x" * 5000}
    assert len(json.dumps(big)) > 4 * 2048
    with RunWriter(path, EVENT_DTYPE) as w:
        w.append_status({"events": 1})
        w.append_status(big)
        w.append_status({"events": 3})
    with RunFile(path) as rf:
        got = rf.status()
    assert [g.get("events") for g in got] == [1, None, 3]
    assert got[1]["losses"] == big["losses"] and got[1]["note"] == big["note"]


def _version2_file(path) -> None:
    """A run file as format version 2 wrote it: byte-string metadata, S2048 status rows."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = S.FORMAT_NAME
        f.attrs["format_version"] = 2
        f.create_dataset(L.EVENTS, data=np.zeros(0, EVENT_DTYPE), maxshape=(None,))
        meta = f.create_group(L.META)
        for key in ("run_number", "run_type", "start_time", "detector", "config"):
            meta.create_dataset(key, data=np.bytes_(str(META[key]).encode()))
        status = np.zeros(2, S.STATUS_DTYPE_V3)
        status["time_ns"] = [1, 2]
        status["json"] = [b'{"events": 5}', json.dumps({"x": "y" * 3000}).encode()[:2048]]
        f.create_dataset(L.STATUS, data=status)


def test_older_files_still_read_alike(tmp_path):
    path = tmp_path / "v2.h5"
    _version2_file(path)
    with RunFile(path) as rf:
        assert rf.format_version == 2
        facts = rf.attributes()
        assert facts["run_number"] == 12 and facts["run_type"] == "calibration"
        assert facts["start_unix"] == 1796657402.0
        assert facts["start_time"] == "2026-12-07T16:30:02+01:00"
        assert rf.metadata()["run_number"] == "12"
        status = rf.status()
    assert [s.get("events") for s in status] == [5]  # the cut snapshot is left out, not garbage
    with open_run(path) as run:
        assert run.info.run_number == 12 and run.info.start_unix == 1796657402.0
