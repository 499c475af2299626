"""Strip names typed by an operator ("X17, Y3-Y5, 200") -> global strip indices, via the mapping."""

from __future__ import annotations

import re

from agetdaq.protocol.mapping import StripMapping

_ITEM = re.compile(r"^([XY]?)(\d+)(?:-([XY]?)(\d+))?$", re.IGNORECASE)


class StripSpecError(ValueError):
    """Text that does not name strips of the mapping."""


def parse_strips(text: str, mapping: StripMapping) -> list[int]:
    """Sorted unique global indices. Items: ``X17``, ``Y3``, ranges ``X10-X12`` / ``Y4-7``, or a
    bare global index ``130`` (X 0..n_x-1, then Y); separated by commas or spaces."""
    out: set[int] = set()
    for item in re.split(r"[,\s]+", re.sub(r"\s*-\s*", "-", text.strip())):
        if not item:
            continue
        m = _ITEM.match(item)
        if not m:
            raise StripSpecError(f"cannot read strip {item!r}: use X17, Y3, X10-X12 or 130")
        axis_a, a, axis_b, b = (
            m.group(1).upper(),
            int(m.group(2)),
            (m.group(3) or "").upper(),
            m.group(4),
        )
        if axis_b and axis_b != axis_a:
            raise StripSpecError(f"range {item!r} mixes axes")
        last = int(b) if b is not None else a
        if last < a:
            raise StripSpecError(f"range {item!r} runs backwards")
        for n in range(a, last + 1):
            out.add(_index(axis_a, n, mapping, item))
    return sorted(out)


def _index(axis: str, n: int, mapping: StripMapping, item: str) -> int:
    if not axis:
        if not 0 <= n < mapping.n_strips:
            raise StripSpecError(f"{item!r}: no strip with global index {n}")
        return n
    try:
        return mapping.global_index(axis, n)
    except IndexError as exc:
        raise StripSpecError(f"{item!r}: {exc}") from None


def format_strips(indices: list[int] | tuple[int, ...], mapping: StripMapping) -> str:
    """Names of global indices, ranges compressed: ``X3-X5, Y0``."""
    parts: list[str] = []
    idx = sorted(set(int(i) for i in indices))
    i = 0
    while i < len(idx):
        j = i
        while (
            j + 1 < len(idx)
            and idx[j + 1] == idx[j] + 1
            and mapping.axis[idx[j + 1]] == mapping.axis[idx[i]]
        ):
            j += 1
        first, last = mapping.name(idx[i]), mapping.name(idx[j])
        parts.append(first if i == j else f"{first}-{last}")
        i = j + 1
    return ", ".join(parts)
