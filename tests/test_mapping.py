"""The strip mapping data file and its loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agetdaq.protocol.channels import daq_index, fpn_indices
from agetdaq.protocol.mapping import MappingError, StripMapping

HEADER = "card,chip,aget_channel,axis,strip,position_mm"


def test_default_mapping_shape() -> None:
    m = StripMapping.default()
    assert (m.n_strips, m.n_x, m.n_y) == (240, 120, 120)
    assert m.axis[:120].tolist() == [0] * 120 and m.axis[120:].tolist() == [1] * 120
    assert m.strip.tolist() == list(range(120)) * 2
    expected = (np.arange(120) - 59.5) * 0.5
    assert np.allclose(m.x_positions_mm, expected) and np.allclose(m.y_positions_mm, expected)
    assert m.position_mm[0] == -29.75 and m.position_mm[119] == 29.75
    assert set(m.card.tolist()) == {0}
    assert m.chip[:60].tolist() == [0] * 60 and m.chip[60:120].tolist() == [1] * 60
    assert m.chip[120:180].tolist() == [2] * 60 and m.chip[180:].tolist() == [3] * 60
    assert sorted(set(m.aget_channel.tolist())) == list(range(3, 63))  # 1, 2, 63, 64 unconnected


def test_default_file_is_the_shipped_csv() -> None:
    path = Path(__file__).parents[1] / "protocol" / "data" / "babyiaxo.csv"
    assert StripMapping.load(path) == StripMapping.default()
    assert "not connected" in path.read_text()


def test_strip_names_and_lut() -> None:
    m = StripMapping.default()
    assert m.strip_name(0, 0, daq_index(3)) == "X0"
    assert m.strip_name(0, 1, daq_index(62)) == "X119"
    assert m.strip_name(0, 2, daq_index(3, 1), rst_len=1) == "Y0"
    assert m.strip_name(0, 3, daq_index(20)) == "Y77"
    for phys in (1, 2, 63, 64):
        assert m.strip_name(0, 0, daq_index(phys)) is None
    for i in (*fpn_indices(0), 0, 1, 70, 78):
        assert m.strip_name(0, 0, i) is None
    assert m.strip_name(1, 0, daq_index(3)) is None
    assert m.strip_name(40, 0, 3) is None and m.strip_name(0, 0, 200) is None
    lut = m.lut()
    assert lut.shape == (32, 4, 79) and lut.dtype == np.int16 and not lut.flags.writeable
    assert np.count_nonzero(lut >= 0) == 240
    assert lut[0, 2, daq_index(3)] == 120 and lut[0, 3, daq_index(62)] == 239
    lut1 = m.lut(1)
    assert lut1[0, 0, daq_index(3, 1)] == 0 and lut1[0, 0, daq_index(3, 0)] == -1
    assert m.lut() is lut  # cached


def test_strip_queries() -> None:
    m = StripMapping.default()
    assert m.global_index("X", 17) == 17 and m.global_index("Y", 3) == 123
    assert m.name(17) == "X17" and m.name(123) == "Y3"
    assert m.chip_of_strip(59) == 0 and m.chip_of_strip(60) == 1 and m.chip_of_strip(239) == 3
    assert m.card_of_strip(100) == 0
    assert m.daq_channel()[0] == 4 and m.daq_channel(1)[0] == 6
    assert m.signal_ids()[:2].tolist() == [4, 5]  # card 0, chip 0, indices 4, 5
    assert m.signal_ids()[120] == 2 * 72 + 4
    with pytest.raises(IndexError):
        m.global_index("Y", 120)


def test_text_and_table_round_trip() -> None:
    m = StripMapping.default()
    text = m.to_text()
    assert text.splitlines()[0] == HEADER and len(text.splitlines()) == 241
    assert StripMapping.from_text(text) == m
    assert StripMapping.from_text(text).to_text() == text
    table = m.to_table()
    assert table.shape == (240,) and table["axis"][0] == b"X" and table["axis"][239] == b"Y"
    assert table["strip"][239] == 119 and table["position_mm"][239] == 29.75


def test_small_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    path.write_text(
        f"# two X strips, one Y\n\n{HEADER}\n1,3,5,Y,0,0.0\n0,0,2,X,1,0.5\n0,0,1,X,0,-0.5\n"
    )
    m = StripMapping.load(path)
    assert (m.n_x, m.n_y) == (2, 1)
    assert [m.name(i) for i in range(3)] == ["X0", "X1", "Y0"]
    assert m.strip_name(1, 3, daq_index(5)) == "Y0"


BAD_FILES = [
    ("0,0,3,X,0,0.0\n0,0,3,X,1,0.5\n", 3, "already mapped on line 2"),  # same channel twice
    ("0,0,3,X,0,0.0\n0,1,3,X,0,0.5\n", 3, "strip X0 already mapped"),  # same strip twice
    ("0,0,3,X,0,0.0\n0,0,4,X,2,1.0\n", 3, "X1 is missing"),  # gap
    ("0,0,3,Y,1,0.0\n", 2, "Y0 is missing"),  # numbering not starting at 0
    ("0,0,3,Z,0,0.0\n", 2, "axis 'Z'"),
    ("32,0,3,X,0,0.0\n", 2, "card 32 out of range"),
    ("0,4,3,X,0,0.0\n", 2, "chip 4 out of range"),
    ("0,0,0,X,0,0.0\n", 2, "aget_channel 0 out of range"),
    ("0,0,65,X,0,0.0\n", 2, "aget_channel 65 out of range"),
    ("0,0,x,X,0,0.0\n", 2, "aget_channel 'x' is not an integer"),
    ("0,0,3,X,1.5,0.0\n", 2, "strip '1.5' is not an integer"),
    ("0,0,3,X,0,abc\n", 2, "position_mm 'abc' is not a number"),
    ("0,0,3,X,0,nan\n", 2, "not finite"),
    ("0,0,3,X,0\n", 2, "expected 6 fields"),
]


@pytest.mark.parametrize("rows, line, fragment", BAD_FILES)
def test_bad_file_names_file_and_line(tmp_path: Path, rows: str, line: int, fragment: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"{HEADER}\n{rows}")
    with pytest.raises(MappingError) as info:
        StripMapping.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message


def test_bad_header_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("# comment\ncard,chip,channel,axis,strip,position_mm\n")
    with pytest.raises(MappingError, match=rf"^{path}:2: header"):
        StripMapping.load(path)
    path.write_text("# only comments\n")
    with pytest.raises(MappingError, match="no header"):
        StripMapping.load(path)
    path.write_text(f"{HEADER}\n")
    with pytest.raises(MappingError, match="no strips"):
        StripMapping.load(path)
    with pytest.raises(MappingError, match="cannot read"):
        StripMapping.load(tmp_path / "missing.csv")
