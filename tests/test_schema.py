"""The one schema (agetdaq.readout.schema): its fingerprint per FORMAT_VERSION, the processing
producing exactly its feature columns, the store layering, and the docs that describe it."""

from __future__ import annotations

import ast
import importlib
import re
import time
from enum import IntEnum, IntFlag
from pathlib import Path

import numpy as np
import pytest
from emulated_fe55 import EmulatedDaq

from agetdaq.readout import schema as S
from agetdaq.readout.datapath.processing.features import FEATURES_DTYPE
from agetdaq.readout.datapath.processing.waveforms import FlatBatch, scatter
from agetdaq.readout.datapath.rows import event_rows
from agetdaq.readout.store import layout as L

ROOT = Path(__file__).resolve().parents[1]

# FORMAT_VERSION -> sha256 of the canonical description of the record (schema.describe() plus the
# dataset names of store/layout.py). Never edit an entry: a changed record is a new version.
FINGERPRINTS = {
    2: "d97cbf0c75775a5b3ac3bc980f27413b672e2c3a53e83b3601933bc65140f3f2",
    3: "493edcad317b7de59db7abe674032ee2918a72b54a1d3f57509eea95d4099bcb",
    4: "4cab114a7ac2317afbfcb7580b0e4c2aabdc2afa6f93e6699f95252e0d38a508",
}


def _current() -> str:
    return S.fingerprint({"datasets": list(L.DATASETS)})


def test_the_record_has_not_changed_without_a_format_version_bump() -> None:
    got = _current()
    assert max(FINGERPRINTS) == S.FORMAT_VERSION, (
        f"FORMAT_VERSION is {S.FORMAT_VERSION} but the newest fingerprint in tests/test_schema.py "
        f"is for version {max(FINGERPRINTS)}: add FINGERPRINTS[{S.FORMAT_VERSION}] = {got!r}"
    )
    assert got == FINGERPRINTS[S.FORMAT_VERSION], (
        "The run-file record (a column, dtype, flag bit, class code, aux kind, pedestal flag or "
        f"dataset name) differs from format version {S.FORMAT_VERSION}. If the change is meant: "
        f"set FORMAT_VERSION = {S.FORMAT_VERSION + 1} and describe it in FORMAT_HISTORY "
        "(readout/schema.py), add "
        f"FINGERPRINTS[{S.FORMAT_VERSION + 1}] = {got!r} to tests/test_schema.py (never edit "
        "an existing entry), update docs/FILE_FORMAT.md, and keep the reader "
        "(readout/store/reader.py) able to read the older versions. If it is not meant: undo it."
    )


def test_every_version_is_described() -> None:
    assert sorted(S.FORMAT_HISTORY) == list(range(1, S.FORMAT_VERSION + 1))
    assert set(FINGERPRINTS) <= set(S.FORMAT_HISTORY)


def test_the_fingerprint_sees_every_kind_of_change(monkeypatch) -> None:
    base = _current()
    wider = [(n, "<f8" if n == "energy" else t) for n, t in S.FEATURE_COLUMNS]
    changes = {
        "EVENT_DTYPE": np.dtype(S.EVENT_HEADER_COLUMNS + wider),
        "CHANNEL_DTYPE": np.dtype([*S.CHANNEL_DTYPE.descr[:-1], ("n_samples", "<u4")]),
        "EventClass": IntEnum("EventClass", {"NOISE": 0, "XRAY": 1, "MUON": 2, "OTHER": 4}),
        "BuildFlag": IntFlag(
            "BuildFlag", {f.name: int(f) for f in S.BuildFlag if f} | {"NEW": 128}
        ),
        "PedestalFlag": IntFlag("PedestalFlag", {"DEAD": 1, "NOISY": 2, "MASKED": 8}),
    }
    for name, value in changes.items():
        with monkeypatch.context() as m:
            m.setattr(S, name, value)
            assert _current() != base, name
    with monkeypatch.context() as m:
        m.setattr(L, "DATASETS", (*L.DATASETS[:-1], "meta_out/pedestal_table"))
        assert _current() != base
    assert _current() == base


def test_flag_bits_are_distinct() -> None:
    flags = {f.name: int(f) for f in S.BuildFlag if f}
    assert len(set(flags.values())) == len(flags)
    assert all(v & (v - 1) == 0 for v in flags.values())  # one bit each
    assert S.BUILDER_FLAGS & (S.NOT_PROCESSED | S.SAMPLES_IN_RAW) == 0


def test_event_table_is_the_header_then_the_features() -> None:
    names = S.EVENT_DTYPE.names
    assert names == tuple(n for n, _ in S.EVENT_HEADER_COLUMNS) + S.FEATURE_NAMES
    assert S.EVENT_DTYPE.itemsize == 108  # format version 2, unchanged by the schema module
    assert FEATURES_DTYPE.names == ("event", *S.FEATURE_NAMES)


def test_class_codes_are_the_processing_s() -> None:
    trigger = importlib.import_module("agetdaq.readout.datapath.processing.trigger")
    assert (trigger.NOISE, trigger.XRAY, trigger.MUON, trigger.OTHER) == (0, 1, 2, 3)
    assert [S.CLASS_NAMES[c] for c in S.EventClass] == ["noise", "xray", "muon", "other"]
    assert sorted(S.CLASS_LABELS) == [int(c) for c in S.EventClass]


@pytest.fixture(scope="module")
def processed():
    """X-rays and muons through the real chain (emulator physics -> card -> decoder -> builder ->
    Processor), and the event rows the data path writes of them."""
    daq = EmulatedDaq("gain-drift", seed=5)
    kinds = ["xray"] * 30 + ["muon"] * 10
    built, _ = daq._built(kinds, np.linspace(1.0, 2.0, len(kinds)))
    fill, fpn_fill = daq.processor.fill_values()
    dense = scatter(FlatBatch.from_decoded(built.decoded), daq.layout, fill, fpn_fill)
    proc = daq.processor.process(
        dense.strips, dense.fpn, dense.fpn_present, dense.present, events=built.event_id
    )
    return proc.features, event_rows(built, proc.features, 1)


def test_the_processing_produces_exactly_the_schema_s_feature_columns(processed) -> None:
    features, rows = processed
    produced = [(n, features.dtype[n].str) for n in features.dtype.names if n != "event"]
    declared = [(n, np.dtype(t).str) for n, t in S.FEATURE_COLUMNS]
    assert produced == declared
    assert rows.dtype == S.EVENT_DTYPE
    for name in S.FEATURE_NAMES:
        assert np.array_equal(rows[name], features[name], equal_nan=True), name
        # a declared column the processing does not compute would stay 0 for every event
        assert np.any((rows[name] != 0) | np.isnan(rows[name].astype(np.float64))), name
    assert not np.any(rows["build_flags"] & S.NOT_PROCESSED)
    assert set(np.unique(rows["cls"])) >= {int(S.EventClass.XRAY)}


def test_the_store_sits_below_the_data_path() -> None:
    """Nothing in readout/store imports the data path, the CLI or anything above the store;
    the schema imports only numpy and the protocol."""
    above = ("datapath", "cli", "acquisition", "analysis", "simulation", "link", "transport")
    for path in [*sorted((ROOT / "readout" / "store").glob("*.py")), ROOT / "readout/schema.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            for mod in mods:
                parts = mod.split(".")
                if parts[:2] == ["agetdaq", "readout"] and len(parts) > 2:
                    assert parts[2] not in above, f"{path.name} imports {mod}"
                    if path.name == "schema.py":
                        raise AssertionError(f"schema.py imports {mod}")


# ---- the docs describe the schema ----------------------------------------------------------------


def _kind(dtype: np.dtype) -> str:
    return dtype.str.lstrip("<>|=")


def test_file_format_doc_lists_every_column_and_flag() -> None:
    text = (ROOT / "docs" / "FILE_FORMAT.md").read_text()
    assert f"format version {S.FORMAT_VERSION}" in text
    assert "readout/schema.py" in text
    for name in S.EVENT_DTYPE.names:
        assert re.search(rf"\| `{name}` \| {_kind(S.EVENT_DTYPE[name])} \|", text), name
    for flag in S.BuildFlag:
        if flag:
            assert f"`{flag.name}` | {int(flag):#x}" in text or f"`{flag.name}` | {int(flag)}" in (
                text
            ), flag.name
    for name, table in (("channels", S.CHANNEL_DTYPE), ("aux", S.AUX_DTYPE)):
        for col in table.names:
            assert f"`{col}` {_kind(table[col])}" in text, (name, col)


def test_stream_doc_lists_every_topic_and_summary_array() -> None:
    text = (ROOT / "docs" / "STREAM.md").read_text()
    assert "readout/schema.py" in text
    for topic in S.TOPICS:
        assert f"| `{topic}` |" in text, topic
    summary = next(line for line in text.splitlines() if line.startswith("| `summary` |"))
    for name in S.SUMMARY_ARRAYS:
        assert f"`{name}`" in summary, name
    status = next(line for line in text.splitlines() if line.startswith("| `status` |"))
    for name in S.STATUS_FIELDS:
        assert f"`{name}`" in status, name


# ---- the stream messages the DAQ sends carry the schema's fields ------------------------------


def test_the_monitor_feed_sends_what_the_schema_declares(processed) -> None:
    """The DAQ's own producers (MonitorFeed, CalibFeed) on a real ZeroMQ socket."""
    from agetdaq.readout.analysis.calibration import TrendPoint
    from agetdaq.readout.analysis.monitor import MonitorFeed
    from agetdaq.readout.transport.stream import Publisher, Subscriber

    _, rows = processed
    pub = Publisher("tcp://127.0.0.1:*")
    sub = Subscriber(pub.address, topics=S.TOPICS)
    try:
        deadline = time.monotonic() + 5
        while sub.recv(20) is None and time.monotonic() < deadline:  # slow joiner
            pub.publish("status", {})
        feed = MonitorFeed(pub, summary_rate_hz=1e6, event_rate_hz=1e6, hist_interval_s=0.0)
        feed.begin_run(7, "background")
        n = len(rows)
        feed.on_batch(rows, np.zeros((n, 240), bool), np.zeros((n, 240, 512), np.float32), 0)
        feed.publish_hist()
        feed.publish_pedestals(7, np.zeros(3, S.PEDESTAL_DTYPE), 5.0)
        feed.calib.run_number = 7
        point = TrendPoint(0, 0.0, 60.0, 10, 5, False, "test", *([float("nan")] * 12))
        feed.calib.publish(point, np.array([3000.0]))
        got: dict[str, object] = {}
        deadline = time.monotonic() + 10
        want = {"summary", "event", "hist", "pedestal", "calib"}
        while not want <= set(got) and time.monotonic() < deadline:
            msg = sub.recv(50)
            if msg is not None:
                got.setdefault(msg.topic, msg)
    finally:
        pub.close()
        sub.close()
    assert want <= set(got), sorted(got)

    def header(topic: str) -> set[str]:
        return set(got[topic].header) - set(S.ENVELOPE_FIELDS)

    summary = got["summary"]
    assert set(summary.arrays) == set(S.SUMMARY_ARRAYS)
    assert header("summary") == set(S.SUMMARY_HEADER)
    np.testing.assert_array_equal(summary.arrays["energy_adc"], rows["energy"])
    assert set(S.EVENT_MESSAGE_HEADER) <= header("event")
    assert header("event") <= set(S.EVENT_MESSAGE_HEADER) | set(S.SUMMARY_FIELDS)
    assert set(got["event"].arrays) == set(S.EVENT_MESSAGE_ARRAYS)
    assert header("hist") == set(S.HIST_HEADER) and set(got["hist"].arrays) == set(S.HIST_ARRAYS)
    assert set(got["hist"].header["class_counts"]) == set(S.CLASS_NAMES)
    assert header("pedestal") == set(S.PEDESTAL_HEADER)
    assert set(got["pedestal"].arrays) == set(S.PEDESTAL_ARRAYS)
    assert header("calib") == set(S.CALIB_HEADER)
    assert set(got["calib"].arrays) == set(S.CALIB_ARRAYS)
