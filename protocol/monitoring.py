"""MFRAME monitoring replies: ``cmd stat``, ``list ped|thr``, ``hped getsummary|getmath|getbins``.

Encoders build the whole datagram (lead word 0 + MFRAME, as the card sends it); parsers take a
datagram or an already decoded :class:`~agetdaq.protocol.commands.Reply` and raise
:class:`~agetdaq.protocol.commands.ProtocolError` on anything that does not fit (PROTOCOL.md §2,
§3.6). u32 values are two words, low word first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields

import numpy as np

from agetdaq.protocol import words as w
from agetdaq.protocol.commands import ProtocolError, Reply, encode_mframe, parse_reply

HISTO_ALLOWED_SIZE = 1400  # the card stops adding histogram items once the frame reaches this
PED_HISTO_BINS = 512
_SUMMARY_ITEM_BYTES = 12  # CHAN_HISTO + PEDESTAL_H_MD + 2 x u32
SUMMARY_MAX_CHANNELS = -(-(HISTO_ALLOWED_SIZE - 4) // _SUMMARY_ITEM_BYTES)  # 117 per reply


@dataclass(frozen=True)
class CmdStats:
    """The nine ``cmd stat`` counters, in frame order (§3.6)."""

    rx_cmd: int = 0
    rx_daq: int = 0
    rx_daq_timeout: int = 0
    rx_daq_delayed: int = 0
    daq_missing: int = 0
    cmd_errors: int = 0
    tx_replies: int = 0  # the card counts the reply carrying these statistics
    tx_daq: int = 0
    tx_daq_resent: int = 0


CMD_STAT_FIELDS = tuple(f.name for f in fields(CmdStats))


@dataclass(frozen=True)
class HistoStats:
    """The nine histogram statistics; mean and stddev are the transmitted value / 100."""

    min_bin: int
    max_bin: int
    bin_width: int
    bin_count: int
    min_value: int
    max_value: int
    mean: float
    stddev: float
    entries: int


@dataclass(frozen=True)
class PedThrList:
    """A ``list ped|thr`` reply: one signed table per ASIC (72 entries AGET, 79 AFTER)."""

    fem: int
    thresholds: bool
    after_mode: bool
    tables: dict[int, np.ndarray]  # asic -> int16 values by DAQ channel index


@dataclass(frozen=True)
class ChannelSummary:
    """One channel of a ``hped getsummary`` reply."""

    card: int
    chip: int
    channel: int
    mean: float
    stddev: float


@dataclass(frozen=True)
class ChannelHisto:
    """``hped getmath`` (``stats``) or ``hped getbins`` (``bins``: bin -> count) of one channel."""

    card: int
    chip: int
    channel: int
    stats: HistoStats | None = None
    bins: dict[int, int] | None = None


def _x100(value: float) -> int:
    """The card's ``(unsigned int)(100.0 * x)``: truncation, clamped to u32."""
    return min(max(int(100.0 * value), 0), 0xFFFFFFFF)


def _u32_at(payload: Sequence[int], i: int) -> int:
    return payload[i] | (payload[i + 1] << 16)


def _payload(data: bytes | Reply) -> Reply:
    reply = data if isinstance(data, Reply) else parse_reply(data)
    if reply.kind != "M":
        raise ProtocolError(f"expected a monitoring frame, got a text reply: {reply.text!r}")
    return reply


def _expect(payload: Sequence[int], i: int, prefix: int, name: str) -> None:
    if i >= len(payload) or payload[i] != prefix:
        got = f"{payload[i]:#06x}" if i < len(payload) else "end of frame"
        raise ProtocolError(f"expected {name} at payload word {i}, got {got}")


# ---- cmd stat -----------------------------------------------------------------------------------


def encode_cmd_stat(stats: CmdStats, source_id: int = 0) -> bytes:
    payload = [w.CMD_STATISTICS]
    for value in astuple(stats):
        payload += w.u32_words(value)
    return encode_mframe(payload, source_id)


def parse_cmd_stat(data: bytes | Reply) -> CmdStats:
    payload = _payload(data).payload
    _expect(payload, 0, w.CMD_STATISTICS, "CMD_STATISTICS")
    if len(payload) != 1 + 2 * w.N_STAT_U32:
        raise ProtocolError(f"cmd stat payload has {len(payload)} words, expected 19")
    return CmdStats(*(_u32_at(payload, 1 + 2 * k) for k in range(w.N_STAT_U32)))


# ---- list ped|thr -------------------------------------------------------------------------------


def encode_pedthr_list(
    tables: Mapping[int, Sequence[int]],
    source_id: int = 0,
    thresholds: bool = False,
    after_mode: bool = False,
) -> bytes:
    """``list`` reply for the ASICs in ``tables`` (in mapping order); values are s16."""
    n = w.PEDTHR_ENTRIES_AFTER if after_mode else w.PEDTHR_ENTRIES_AGET
    payload: list[int] = []
    for asic, values in tables.items():
        if len(values) != n:
            raise ValueError(f"asic {asic}: {len(values)} entries, the list carries {n}")
        payload.append(w.pedthr_list(source_id, asic, after_mode, thresholds))
        for v in values:
            if not -0x8000 <= v <= 0xFFFF:
                raise ValueError(f"asic {asic}: value {v} does not fit 16 bits")
            payload.append(int(v) & 0xFFFF)
    return encode_mframe(payload, source_id)


def parse_pedthr_list(data: bytes | Reply) -> PedThrList:
    payload = _payload(data).payload
    tables: dict[int, np.ndarray] = {}
    kind: tuple[int, bool, bool] | None = None
    i = 0
    while i < len(payload):
        if w.classify(payload[i]) != w.Kind.PEDTHR_LIST:
            raise ProtocolError(f"expected PEDTHR_LIST at payload word {i}, got {payload[i]:#06x}")
        fem, asic, after, thr = w.pedthr_list_fields(payload[i])
        if kind is not None and kind != (fem, after, thr):
            raise ProtocolError(f"PEDTHR_LIST at word {i} changes fem/mode/type within one reply")
        kind = (fem, after, thr)
        n = w.PEDTHR_ENTRIES_AFTER if after else w.PEDTHR_ENTRIES_AGET
        if i + 1 + n > len(payload):
            raise ProtocolError(f"asic {asic}: list truncated ({len(payload) - i - 1} of {n})")
        tables[asic] = np.array(payload[i + 1 : i + 1 + n], dtype=np.uint16).view(np.int16)
        i += 1 + n
    if kind is None:
        raise ProtocolError("list reply without any PEDTHR_LIST")
    return PedThrList(kind[0], kind[2], kind[1], tables)


# ---- hped getsummary / getmath / getbins --------------------------------------------------------


def encode_ped_summary(
    entries: Iterable[tuple[int, int, float, float]], source_id: int = 0
) -> bytes:
    """``hped getsummary`` reply from (chip, channel, mean, stddev) items, cut like the card:
    an item is added, then the frame stops once it reaches HISTO_ALLOWED_SIZE bytes."""
    payload: list[int] = []
    size = 4  # SOF + size word
    for chip, channel, mean, stddev in entries:
        payload.append(w.chan_header(source_id, chip, channel, w.CHAN_HISTO))
        payload.append(w.PEDESTAL_H_MD)
        payload += w.u32_words(_x100(mean)) + w.u32_words(_x100(stddev))
        size += _SUMMARY_ITEM_BYTES
        if size >= HISTO_ALLOWED_SIZE:
            break
    return encode_mframe(payload, source_id)


def parse_ped_summary(data: bytes | Reply) -> list[ChannelSummary]:
    payload = _payload(data).payload
    out: list[ChannelSummary] = []
    for i in range(0, len(payload), 6):
        if w.classify(payload[i]) != w.Kind.CHAN_HISTO:
            raise ProtocolError(f"expected CHAN_HISTO at payload word {i}, got {payload[i]:#06x}")
        _expect(payload, i + 1, w.PEDESTAL_H_MD, "PEDESTAL_H_MD")
        if i + 6 > len(payload):
            raise ProtocolError(f"summary item at word {i} is truncated")
        card, chip, chan = w.chan_header_fields(payload[i])
        mean, sd = _u32_at(payload, i + 2) / 100.0, _u32_at(payload, i + 4) / 100.0
        out.append(ChannelSummary(card, chip, chan, mean, sd))
    return out


def encode_histo_math(chip: int, channel: int, stats: HistoStats, source_id: int = 0) -> bytes:
    """``hped getmath`` reply: CHAN_HISTO, PEDESTAL_HSTAT, 9 x u32."""
    values = list(astuple(stats))
    values[6], values[7] = _x100(stats.mean), _x100(stats.stddev)
    payload = [w.chan_header(source_id, chip, channel, w.CHAN_HISTO), w.PEDESTAL_HSTAT]
    for value in values:
        payload += w.u32_words(int(value))
    return encode_mframe(payload, source_id)


def parse_histo_math(data: bytes | Reply) -> ChannelHisto:
    payload = _payload(data).payload
    if not payload or w.classify(payload[0]) != w.Kind.CHAN_HISTO:
        raise ProtocolError("getmath reply does not start with CHAN_HISTO")
    _expect(payload, 1, w.PEDESTAL_HSTAT, "PEDESTAL_HSTAT")
    if len(payload) != 2 + 2 * w.N_STAT_U32:
        raise ProtocolError(f"getmath payload has {len(payload)} words, expected 20")
    v = [_u32_at(payload, 2 + 2 * k) for k in range(w.N_STAT_U32)]
    stats = HistoStats(v[0], v[1], v[2], v[3], v[4], v[5], v[6] / 100.0, v[7] / 100.0, v[8])
    return ChannelHisto(*w.chan_header_fields(payload[0]), stats=stats)


def encode_histo_bins(chip: int, channel: int, counts: Sequence[int], source_id: int = 0) -> bytes:
    """``hped getbins`` reply: CHAN_HISTO, then (HISTO_BIN_IX, u16 count) per non-empty bin,
    stopping once the frame reaches HISTO_ALLOWED_SIZE bytes."""
    if len(counts) > PED_HISTO_BINS:
        raise ValueError(f"{len(counts)} bins, the histogram has {PED_HISTO_BINS}")
    payload = [w.chan_header(source_id, chip, channel, w.CHAN_HISTO)]
    size = 6
    for b, count in enumerate(counts):
        if count:
            payload += [w.histo_bin_ix(b), min(int(count), 0xFFFF)]
            size += 4
        if size >= HISTO_ALLOWED_SIZE:
            break
    return encode_mframe(payload, source_id)


def parse_histo_bins(data: bytes | Reply) -> ChannelHisto:
    payload = _payload(data).payload
    if not payload or w.classify(payload[0]) != w.Kind.CHAN_HISTO:
        raise ProtocolError("getbins reply does not start with CHAN_HISTO")
    if len(payload) % 2 != 1:
        raise ProtocolError("getbins reply has a bin index without its count")
    bins: dict[int, int] = {}
    for i in range(1, len(payload), 2):
        if w.classify(payload[i]) != w.Kind.HISTO_BIN_IX:
            raise ProtocolError(f"expected HISTO_BIN_IX at payload word {i}, got {payload[i]:#06x}")
        bins[payload[i] & 0x1FF] = payload[i + 1]
    return ChannelHisto(*w.chan_header_fields(payload[0]), bins=bins)
