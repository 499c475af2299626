"""A run file's metadata (docs/FILE_FORMAT.md, "Metadata"): typed HDF5 attributes with units for
the run's facts, text datasets for the long texts, and how older files are read alike.

Format version 4 writes on the ``/meta`` group one attribute per fact, in its own type
(:data:`RUN_ATTRIBUTES`): ``run_number`` an integer, ``start_time`` an ISO 8601 text with its UTC
offset and ``start_unix`` the same instant in unix seconds, and so on; an attribute with a unit has
a sibling ``<name>_units`` text attribute (``start_unix_units = "s"``). Other scalars given to the
writer (numbers, flags, short one-line texts) become attributes of their own type too. Long texts
(the settings TOML, the strip mapping CSV, the card script ...) are UTF-8 string datasets
``/meta/<name>`` with a ``content_type`` attribute. Files of versions 1-3 kept every item as a
byte-string dataset (``run_number`` = b"2"): :func:`read_attributes` gives them the same typed
view and :func:`metadata_text` the same text view.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone

import h5py
import numpy as np

RUN_ATTRIBUTES: dict[str, tuple[type, str, str]] = {
    # name: (type, unit, meaning)
    "run_number": (int, "", "run number of the DAQ line's run log"),
    "run_type": (str, "", "background, calibration or pedestal"),
    "comment": (str, "", "the shift crew's comment"),
    "detector": (str, "", "detector (line) name, [daq] detector"),
    "board": (str, "", "board address HOST:PORT"),
    "start_time": (str, "", "run start, ISO 8601 with the UTC offset"),
    "start_unix": (float, "s", "run start, unix seconds"),
    "software_version": (str, "", "agetdaq version that wrote the file"),
}
CONTENT_TYPES = {"config": "toml", "mapping": "csv", "script": "feminos-script"}
_LONG_TEXT = 256  # characters; longer (or multi-line) texts become datasets
_TEXT = h5py.string_dtype("utf-8")


def parse_time(text: str) -> datetime | None:
    """A run-file time text (ISO 8601, or version 1-3's ``%Y-%m-%dT%H:%M:%S%z``) or None."""
    for parse in (datetime.fromisoformat, lambda t: datetime.strptime(t, "%Y-%m-%dT%H:%M:%S%z")):
        try:
            return parse(text)
        except (TypeError, ValueError):
            continue
    return None


def _typed(name: str, value: object) -> object | None:
    """The attribute value of a metadata item, or None when it belongs in a text dataset."""
    if name in RUN_ATTRIBUTES:
        kind = RUN_ATTRIBUTES[name][0]
        if kind is int:
            return np.int64(int(str(value)))
        if kind is float:
            return np.float64(float(str(value)))
        return str(value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return np.int64(value)
    if isinstance(value, (float, np.floating)):
        return np.float64(value)
    if isinstance(value, str) and len(value) <= _LONG_TEXT and "\n" not in value:
        return value
    return None


def write_metadata(group: h5py.Group, metadata: Mapping[str, object]) -> None:
    """The writer's metadata: typed attributes and text datasets on ``group`` (``/meta``)."""
    items = dict(metadata)
    start = parse_time(str(items.get("start_time", "")))
    if start is not None:  # one instant, two spellings
        if start.tzinfo is None:
            start = start.astimezone()
        items["start_time"] = start.isoformat()
        items.setdefault("start_unix", start.timestamp())
    for key, value in items.items():
        if isinstance(value, np.ndarray):
            group.create_dataset(key, data=value)
            continue
        typed = _typed(key, value)
        if typed is not None:
            group.attrs[key] = typed
            unit = RUN_ATTRIBUTES.get(key, (None, "", ""))[1]
            if unit:
                group.attrs[f"{key}_units"] = unit
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        ds = group.create_dataset(key, data=text, dtype=_TEXT)
        ds.attrs["content_type"] = CONTENT_TYPES.get(
            key, "json" if not isinstance(value, str) else "text"
        )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    if isinstance(value, (np.floating, float)):
        return repr(float(value))
    if isinstance(value, (np.integer, np.bool_)):
        return str(value.item())
    return str(value)


def metadata_text(group: h5py.Group | None) -> dict[str, str]:
    """Every metadata item as text, whatever the format version: text datasets, then attributes
    (``*_units`` left out). Version 1-2 byte strings are decoded."""
    if group is None:
        return {}
    out = {
        k: _text(group[k][()])
        for k in group
        if isinstance(group[k], h5py.Dataset) and group[k].dtype.kind in "SOU"
    }
    for k, v in group.attrs.items():
        if not k.endswith("_units"):
            out[k] = _text(v)
    return out


def read_attributes(group: h5py.Group | None) -> dict[str, object]:
    """The run's facts in their types (:data:`RUN_ATTRIBUTES`), from the attributes of a version
    4 file or the text datasets of an older one; missing facts are left out."""
    text = metadata_text(group)
    out: dict[str, object] = {}
    for name, (kind, _, _) in RUN_ATTRIBUTES.items():
        if name not in text:
            continue
        try:
            out[name] = kind(text[name]) if kind is not str else text[name]
        except ValueError:
            continue
    if "start_unix" not in out and "start_time" in out:
        start = parse_time(str(out["start_time"]))
        if start is not None:
            out["start_unix"] = start.timestamp()
            out["start_time"] = start.isoformat()
    return out


def utc_now_iso() -> str:
    """Now, ISO 8601 with the local UTC offset (``start_time``)."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
