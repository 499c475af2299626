"""Software settings of the DAQ, from TOML (board commands live in command scripts, not here).

Example (every key optional; defaults as below)::

    [daq]
    bec = "127.0.0.1:1122"
    data_dir = "data"
    detector = "babyiaxo-d0"
    mapping = ""                  # strip mapping CSV; empty = the shipped BabyIAXO mapping
    rst_len = 0
    store_waveforms = "hits"      # hits | events | all | none
    batch = 256                   # datagrams per processing step
    status_interval_s = 1.0
    disk_warn_gb = 20.0
    disk_stop_gb = 5.0
    board_timeout_s = 4.0
    heartbeat_s = 1.0             # a bare `daq` this often proves the board alive
    shed_fill = 0.2               # ring fill above which processing (not recording) is shed

    [credit]                      # like `credits restore 8 1 F`
    unit = "F"
    window = 8
    threshold = 1

    [writer]
    compression = "blosc-lz4"
    swmr = true
    flush_interval_s = 1.0
    raw = true

    [stream]
    event_rate_hz = 5.0           # full events published at most this often
    summary_rate_hz = 10.0

    [processing]                  # agetdaq.readout.datapath.processing.pipeline.ProcessorConfig
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from agetdaq.readout.datapath.processing.pipeline import ProcessorConfig
from agetdaq.readout.link.credit import CreditConfig
from agetdaq.readout.store.layout import COMPRESSIONS
from agetdaq.readout.store.writer import WriterConfig

STORE_MODES = ("hits", "events", "all", "none")


class SettingsError(ValueError):
    """A bad settings file or value; the message names the file and key."""


@dataclass(frozen=True)
class DaqSettings:
    bec: str = "127.0.0.1:1122"
    data_dir: str = "data"
    detector: str = "babyiaxo"
    mapping: str = ""
    rst_len: int = 0
    store_waveforms: str = "hits"
    batch: int = 256
    status_interval_s: float = 1.0
    disk_warn_gb: float = 20.0
    disk_stop_gb: float = 5.0
    board_timeout_s: float = 4.0
    heartbeat_s: float = 1.0
    shed_fill: float = 0.2  # ring fill above which online processing is shed (1.0 = never)
    board_type: str = "feminos"  # a name in agetdaq.readout.link.board.BOARD_TYPES


@dataclass(frozen=True)
class StreamSettings:
    event_rate_hz: float = 5.0
    summary_rate_hz: float = 10.0


@dataclass(frozen=True)
class Settings:
    daq: DaqSettings = field(default_factory=DaqSettings)
    credit: CreditConfig = field(default_factory=CreditConfig)
    writer: WriterConfig = field(default_factory=WriterConfig)
    stream: StreamSettings = field(default_factory=StreamSettings)
    processing: ProcessorConfig = field(default_factory=ProcessorConfig)
    source: str = ""  # the TOML text, stored in the run file

    @classmethod
    def load(cls, path: str | Path | None) -> Settings:
        if path is None:
            return cls()
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise SettingsError(f"cannot read settings {p}: {exc}") from exc
        return cls.from_text(text, str(p))

    @classmethod
    def from_text(cls, text: str, where: str = "<settings>") -> Settings:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{where}: not valid TOML: {exc}") from exc
        known = {"daq", "credit", "writer", "stream", "processing"}
        for key in data:
            if key not in known:
                raise SettingsError(f"{where}: unknown section [{key}]; known: {sorted(known)}")
        try:
            proc = (
                ProcessorConfig.from_toml({"processing": data["processing"]})
                if "processing" in data
                else ProcessorConfig()
            )
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{where}: [processing]: {exc}") from exc
        s = cls(
            daq=_section(DaqSettings, data.get("daq", {}), where, "daq"),
            credit=_section(CreditConfig, data.get("credit", {}), where, "credit"),
            writer=_section(WriterConfig, data.get("writer", {}), where, "writer"),
            stream=_section(StreamSettings, data.get("stream", {}), where, "stream"),
            processing=proc,
            source=text,
        )
        s.check(where)
        return s

    def check(self, where: str = "<settings>") -> None:
        d = self.daq
        if d.store_waveforms not in STORE_MODES:
            raise SettingsError(f"{where}: daq.store_waveforms must be one of {STORE_MODES}")
        if d.rst_len not in (0, 1):
            raise SettingsError(f"{where}: daq.rst_len must be 0 or 1")
        if not 0.0 < d.shed_fill <= 1.0:
            raise SettingsError(f"{where}: daq.shed_fill must be in (0, 1]")
        if d.batch < 1 or d.status_interval_s <= 0 or d.board_timeout_s <= 0:
            raise SettingsError(f"{where}: daq.batch, intervals and timeouts must be positive")
        if self.writer.compression not in COMPRESSIONS:
            raise SettingsError(f"{where}: writer.compression must be one of {COMPRESSIONS}")
        parse_address(d.bec)

    def with_daq(self, **changes: Any) -> Settings:
        return replace(self, daq=replace(self.daq, **changes))


def _section(cls: type, values: dict[str, Any], where: str, name: str) -> Any:
    names = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise SettingsError(f"{where}: unknown key {name}.{key}; known: {sorted(names)}")
        default = getattr(cls(), key)
        if isinstance(default, bool) != isinstance(value, bool) or (
            isinstance(default, (int, float)) and not isinstance(value, (int, float))
        ):
            raise SettingsError(f"{where}: {name}.{key} has the wrong type ({value!r})")
        if isinstance(default, str) and not isinstance(value, str):
            raise SettingsError(f"{where}: {name}.{key} must be a string ({value!r})")
        if isinstance(default, float) and isinstance(value, int):
            value = float(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{where}: [{name}]: {exc}") from exc


def parse_address(text: str, default_port: int = 1122) -> tuple[str, int]:
    """'HOST:PORT' (or 'HOST') -> (host, port), with a clear error."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", str(default_port))
    try:
        number = int(port)
    except ValueError:
        raise SettingsError(f"bad board address {text!r}: port is not a number") from None
    if not host or not 0 < number < 65536:
        raise SettingsError(f"bad board address {text!r}: expected HOST:PORT")
    return host, number
