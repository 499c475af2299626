"""Software settings of the DAQ, from TOML (board commands live in command scripts, not here).

Example (every key optional; defaults as below)::

    [daq]
    bec = "127.0.0.1:1122"
    data_dir = "data"
    detector = "babyiaxo"
    mapping = ""                  # strip mapping CSV; empty = the shipped BabyIAXO mapping
    rst_len = 0
    store_waveforms = "hits"      # hits | events | all | none
    batch = 1024                  # datagrams per processing step (at most)
    status_interval_s = 1.0
    disk_warn_gb = 20.0
    disk_stop_gb = 5.0
    board_timeout_s = 4.0
    heartbeat_s = 1.0             # a bare `daq` this often proves the board alive
    shed_fill = 0.6               # ring fill above which processing (not recording) is shed

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

    [calibration]                 # online 55Fe analysis of calibration runs (CalibFeedSettings)
    slice_xrays = 1000            # a gain trend point every N selected X-rays ...
    slice_minutes = 10.0          # ... or T minutes (0: X-rays only)
    window_xrays = 2000           # the live fit (the gain shown and alarmed on): the last N
    window_minutes = 2.0          # selected X-rays of the last T minutes (0: no time limit)
    window_min_xrays = 200        # fitted from this many X-rays on ("waiting for X-rays" before)
    live_interval_s = 2.0         # the live fit this often
    map_n = 6                     # gain map of n x n regions, one region refitted every
    map_step_s = 1.0              # map_step_s once it holds map_min_xrays X-rays
    map_min_xrays = 200

    [processing]                  # agetdaq.readout.datapath.processing.pipeline.ProcessorConfig

    [pipeline]                    # the data path's stages in order (agetdaq.readout.datapath)
    stages = ["sequence", "record_raw", "decode", "build", "shed", "process", "pedcheck",
              "pedestal", "rows", "record", "calibration", "publish"]   # or "package.module:Class"
    [pipeline.options.shed]       # a stage's options (daq.shed_fill / daq.store_waveforms are
    chunk_events = 32             # the shed / record stages' fill / store unless set here)

Loaded by the one settings loader (:mod:`agetdaq.readout.config`): unknown keys, wrong kinds,
non-finite numbers and values out of range are refused as ``file: key: reason`` before anything is
sent to a board. Adding a key is one field below (with its limits); a table, one field of
:class:`Settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agetdaq.readout.analysis.calibsettings import CalibFeedSettings
from agetdaq.readout.config import (
    ConfigError,
    build,
    check,
    in_file,
    parse_toml,
    read_text,
    setting,
)
from agetdaq.readout.datapath.chain import check_order, make_options
from agetdaq.readout.datapath.processing.pipeline import ProcessorConfig
from agetdaq.readout.datapath.registry import DEFAULT_STAGES, check_names, stage_class
from agetdaq.readout.link.credit import CreditConfig
from agetdaq.readout.store.writer import WriterConfig

STORE_MODES = ("hits", "events", "all", "none")
MAX_INTERVAL_S = 3600.0


@dataclass(frozen=True)
class DaqSettings:
    bec: str = setting("127.0.0.1:1122", "board address HOST:PORT", nonempty=True)
    data_dir: str = setting("data", "run files and run log", nonempty=True)
    detector: str = setting("babyiaxo", "detector name (stream source, run file)", nonempty=True)
    mapping: str = setting("", "strip mapping CSV; empty = the shipped BabyIAXO mapping")
    rst_len: int = setting(0, choices=(0, 1))
    store_waveforms: str = setting("hits", choices=STORE_MODES)
    batch: int = setting(1024, "datagrams per processing step (at most)", lo=1, hi=65536)
    status_interval_s: float = setting(1.0, gt=0.0, hi=MAX_INTERVAL_S, unit="s")
    disk_warn_gb: float = setting(20.0, lo=0.0, unit="GB")
    disk_stop_gb: float = setting(5.0, lo=0.0, unit="GB")
    board_timeout_s: float = setting(4.0, gt=0.0, hi=MAX_INTERVAL_S, unit="s")
    heartbeat_s: float = setting(
        1.0, "a bare `daq` this often proves the board alive", gt=0.0, hi=MAX_INTERVAL_S, unit="s"
    )
    shed_fill: float = setting(
        0.6,
        "ring fill above which online processing is shed (1.0 = never); above the credit "
        "loop's hold (0.5 + a window): a safety valve for data that keeps coming past it",
        gt=0.0,
        hi=1.0,
    )
    board_type: str = setting(
        "feminos", "board type, a name in agetdaq.readout.link.board.BOARD_TYPES", nonempty=True
    )
    metrics_bind: str = setting(
        "127.0.0.1", "address of the Prometheus endpoint (0.0.0.0: every interface)", nonempty=True
    )
    metrics_port: int = setting(
        0, "Prometheus endpoint port (0: none; --metrics-port)", lo=0, hi=65535
    )


@dataclass(frozen=True)
class StreamSettings:
    event_rate_hz: float = setting(5.0, "full events published at most this often", lo=0.0, hi=1e4)
    summary_rate_hz: float = setting(10.0, lo=0.0, hi=1e4)


@dataclass(frozen=True)
class PipelineSettings:
    """The data path's stages in order and their options; refused as a whole when a name is
    unknown, a need is filled by no earlier stage or an option is unknown or out of range."""

    stages: tuple[str, ...] = setting(
        DEFAULT_STAGES, 'stage names, or "package.module:Class", in order', nonempty=True
    )
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per stage: its options

    def __post_init__(self) -> None:
        for name, values in self.options.items():
            if name not in self.stages or not isinstance(values, dict):
                raise ValueError(f"options.{name}: not a table of a listed stage")
        check_names(self.stages)
        classes = [stage_class(name) for name in self.stages]
        check_order(self.stages, classes)
        for name, cls in zip(self.stages, classes):
            make_options(cls, name, self.options.get(name, {}))


@dataclass(frozen=True)
class Settings:
    """Every table of the settings file is one field (a dataclass) here."""

    daq: DaqSettings = field(default_factory=DaqSettings)
    credit: CreditConfig = field(default_factory=CreditConfig)
    writer: WriterConfig = field(default_factory=WriterConfig)
    stream: StreamSettings = field(default_factory=StreamSettings)
    calibration: CalibFeedSettings = field(default_factory=CalibFeedSettings)
    processing: ProcessorConfig = field(default_factory=ProcessorConfig)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    source: str = setting("", "the TOML text, stored in the run file", load=False)

    @classmethod
    def load(cls, path: str | Path | None) -> Settings:
        """Defaults, or the settings file ``path``; ConfigError ``file: key: reason``."""
        if path is None:
            return cls()
        return cls.from_text(read_text(path), str(path))

    @classmethod
    def from_text(cls, text: str, where: str = "<settings>") -> Settings:
        with in_file(where):
            s = replace(build(cls, parse_toml(text, where)), source=text)
        s.check(where)
        return s

    def check(self, where: str = "<settings>") -> None:
        """Every value in range (e.g. after command-line changes) and a usable board address."""
        with in_file(where):
            check(self)
            try:
                parse_address(self.daq.bec)
            except ConfigError as exc:
                raise exc.within("daq.bec") from None

    def with_daq(self, **changes: Any) -> Settings:
        return replace(self, daq=replace(self.daq, **changes))


def parse_address(text: str, default_port: int = 1122) -> tuple[str, int]:
    """'HOST:PORT' (or 'HOST') -> (host, port), with a clear error."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", str(default_port))
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"bad board address {text!r}: port is not a number") from None
    if not host or not 0 < number < 65536:
        raise ConfigError(f"bad board address {text!r}: expected HOST:PORT")
    return host, number
