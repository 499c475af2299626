"""Summaries of a data-frame body for the Feminos scapy layer: event headers, channel headers with
their sample counts, event ends (:func:`summarise_data_body`).
"""

from __future__ import annotations

import struct

from scapy.fields import ByteField, IntField, LongField, ShortField, SignedShortField
from scapy.packet import Packet

from agetdaq.protocol import words as w
from agetdaq.protocol.words import KIND_LUT, Kind


class FeminosEventHeader(Packet):
    """Summary of one START_OF_EVENT found in a data frame (offset = word index in the frame)."""

    name = "Event header"
    fields_desc = [  # noqa: RUF012 (scapy API)
        ShortField("offset", 0),
        ByteField("type", 0),
        LongField("timestamp", 0),
        IntField("event_count", 0),
        ByteField("complete", 1),  # 0 when the frame ends inside the 5 header words
    ]

    def mysummary(self) -> str:
        return self.sprintf("SOE type=%type% ts=%timestamp% count=%event_count%")


class FeminosChannelHeader(Packet):
    """Summary of one channel header: where it is, whose it is, how many samples follow."""

    name = "Channel header"
    fields_desc = [  # noqa: RUF012
        ShortField("offset", 0),
        ByteField("card", 0),
        ByteField("chip", 0),
        ByteField("channel", 0),
        ShortField("n_samples", 0),
        SignedShortField("first_bin", -1),  # first TIME_BIN_IX value, -1 without zero suppression
    ]

    def mysummary(self) -> str:
        return self.sprintf("ch %card%/%chip%/%channel% n=%n_samples%")


class FeminosEventEnd(Packet):
    """Summary of one END_OF_EVENT and its 20-bit size."""

    name = "Event end"
    fields_desc = [ShortField("offset", 0), IntField("size", 0)]  # noqa: RUF012


def summarise_data_body(
    body: bytes,
) -> tuple[list[FeminosEventHeader], list[FeminosChannelHeader], list[FeminosEventEnd], int, int]:
    """Event headers, channel headers, event ends, the samples that continue a channel of the
    previous frame (before any other item) and the count of other words of a D-frame body.

    Offsets are word indices in the frame (SOF = 0, size = 1, body from 2). Never raises.
    """
    count = len(body) // 2
    words = list(struct.unpack_from(f"<{count}H", body)) if count else []
    kinds = KIND_LUT[words].tolist() if words else []
    events: list[FeminosEventHeader] = []
    channels: list[FeminosChannelHeader] = []
    ends: list[FeminosEventEnd] = []
    other = 0
    adc, tbin = int(Kind.ADC_SAMPLE), int(Kind.TIME_BIN_IX)
    i = continued = 0
    while i < count and kinds[i] in (adc, tbin):
        continued += kinds[i] == adc
        i += 1
    while i < count:
        kind = kinds[i]
        if kind == Kind.START_OF_EVENT:
            head = words[i + 1 : i + 6]
            ts, cnt = w.soe_fields(*(head + [0] * (5 - len(head))))
            events.append(
                FeminosEventHeader(
                    offset=i + 2,
                    type=w.event_type_value(words[i]),
                    timestamp=ts,
                    event_count=cnt,
                    complete=int(len(head) == 5),
                )
            )
            i += 6
        elif kind == Kind.END_OF_EVENT:
            low = words[i + 1] if i + 1 < count else 0
            ends.append(FeminosEventEnd(offset=i + 2, size=w.eoe_size(words[i], low)))
            i += 2
        elif kind == Kind.CHAN_HIT_IX:
            card, chip, chan = w.chan_header_fields(words[i])
            j, n, first = i + 1, 0, -1
            while j < count and kinds[j] in (adc, tbin):
                if kinds[j] == adc:
                    n += 1
                elif first < 0:
                    first = w.time_bin_value(words[j])
                j += 1
            channels.append(
                FeminosChannelHeader(
                    offset=i + 2, card=card, chip=chip, channel=chan, n_samples=n, first_bin=first
                )
            )
            i = j
        else:
            other += 1
            i += 1
    return events, channels, ends, continued, other
