"""CAN log loaders (Car-Hacking CSV, normal_run_data.txt, candump) on small files the tests write."""
from __future__ import annotations

import numpy as np
import pytest

from compressor.distill.data.can import (
    CLASSES,
    CanDataError,
    attack_from_name,
    load_capture,
    load_captures,
)
from compressor.runtime.can_log import CanLogError, detect_format, parse_lines
from compressor.runtime.can_tokens import BYTE0, DLC0, ID0, UNK_ID, VOID, frame_tokens

CSV_ROWS = """\
1478198376.389427,0316,8,05,21,68,09,21,21,00,6f,R
1478198376.389636,018f,8,fe,5b,00,00,00,3c,00,00,R
1478191030.067627,05f0,2,01,00,R
1478195721.905736,02b0,5,ff,7f,00,05,49,T
1478200651.438389,0000,8,00,00,00,00,00,00,00,00,T
1478200651.438500,0123,0,T
"""
TXT_ROWS = """\
Timestamp: 1479121434.850202        ID: 0350    000    DLC: 8    05 28 84 66 6d 00 00 a2
Timestamp: 1479121434.850423        ID: 02c0    000    DLC: 8    14 00 00 00 00 00 00 00
Timestamp: 1479121434.850977        ID: 05f0    000    DLC: 2    01 00
"""
CANDUMP_ROWS = """\
(1436509052.249713) can0 123#DEADBEEF
(1436509052.250000) vcan0 5F0#0100
(1436509052.250100) can0 12345678#0011223344556677
(1436509052.250200) can0 7FF#R
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_with_dlc_below_8_puts_the_flag_where_the_row_ends(tmp_path):
    capture = load_capture(write(tmp_path, "Fuzzy_dataset.csv", CSV_ROWS))
    f = capture.frames
    assert capture.attack == "fuzzy" and len(f) == 6
    assert f.can_id.tolist() == [0x316, 0x18F, 0x5F0, 0x2B0, 0x000, 0x123]
    assert f.dlc.tolist() == [8, 8, 2, 5, 8, 0]
    assert f.flag.tolist() == [0, 0, 0, 1, 1, 1]
    assert f.data[2].tolist() == [1, 0, 0, 0, 0, 0, 0, 0] and f.data[3, :5].tolist() == [0xFF, 0x7F, 0, 5, 0x49]
    assert f.ts[0] == pytest.approx(1478198376.389427, abs=1e-6)
    assert capture.labels.tolist() == [0, 0, 0, 2, 2, 2]  # T rows take the file's attack class


def test_normal_run_txt_format(tmp_path):
    capture = load_capture(write(tmp_path, "normal_run_data.txt", TXT_ROWS))
    assert capture.attack is None and capture.labels.tolist() == [0, 0, 0]
    assert capture.frames.can_id.tolist() == [0x350, 0x2C0, 0x5F0]
    assert capture.frames.dlc.tolist() == [8, 8, 2]
    assert capture.frames.data[0].tolist() == [0x05, 0x28, 0x84, 0x66, 0x6D, 0x00, 0x00, 0xA2]


def test_candump_lines_including_extended_and_remote_frames():
    frames, bad = parse_lines(CANDUMP_ROWS.splitlines(keepends=True))
    assert bad == 0 and frames.can_id.tolist() == [0x123, 0x5F0, 0x12345678, 0x7FF]
    assert frames.dlc.tolist() == [4, 2, 8, 0] and frames.flag.tolist() == [-1, -1, -1, -1]
    assert frames.data[0, :4].tolist() == [0xDE, 0xAD, 0xBE, 0xEF]


def test_format_is_detected_from_the_first_line():
    assert detect_format(CSV_ROWS.splitlines()[0]) == "csv"
    assert detect_format(TXT_ROWS.splitlines()[0]) == "txt"
    assert detect_format(CANDUMP_ROWS.splitlines()[0]) == "candump"
    with pytest.raises(ValueError):
        detect_format("hello world")


@pytest.mark.parametrize("row, reason", [
    ("1478198376.389427,0316,8,05,21,68,09,R", "DLC 8 needs 12 fields"),
    ("1478198376.389427,0316,2,05,21,68,R", "DLC 2 needs 6 fields"),
    ("1478198376.389427,0316,8,05,21,68,09,21,21,00,6f,X", "flag 'X' is not T or R"),
    ("abc,0316,2,05,21,R", "timestamp 'abc' is not a number"),
    ("1478198376.389427,zz16,2,05,21,R", "CAN ID 'zz16' is not hexadecimal"),
    ("1478198376.389427,0316,9,05,21,R", "DLC '9' is not 0..8"),
    ("1478198376.389427,0316,2,5g,21,R", "two hex digits"),
])
def test_malformed_csv_row_names_file_and_line(tmp_path, row, reason):
    rows = CSV_ROWS.splitlines()
    path = write(tmp_path, "DoS_dataset.csv", "\n".join(rows[:2] + [row] + rows[2:]) + "\n")
    with pytest.raises(CanDataError) as err:
        load_capture(path)
    message = str(err.value)
    assert f"{path} line 3: " in message and reason in message and "\n" not in message
    assert "skip_malformed" in message


def test_malformed_rows_are_counted_and_skipped_when_asked(tmp_path):
    rows = CSV_ROWS.splitlines()
    path = write(tmp_path, "gear_dataset.csv", "\n".join(rows[:2] + ["garbage,1", "", "1.0,0316,8,R"]
                                                                + rows[2:]) + "\n")
    capture = load_capture(path, skip_malformed=True)
    assert capture.malformed == 2 and len(capture.frames) == 6 and capture.attack == "gear"


def test_txt_and_candump_need_flags_for_an_attack_file(tmp_path):
    with pytest.raises(CanDataError, match="no per-frame T/R flags"):
        load_capture(write(tmp_path, "rpm_capture.txt", TXT_ROWS))
    assert load_capture(write(tmp_path, "dump.log", CANDUMP_ROWS), attack="normal").labels.tolist() == [0] * 4


def test_attack_kind_from_file_names():
    assert [attack_from_name(n) for n in ("DoS_dataset.csv", "Fuzzy_dataset.csv", "gear_dataset.csv",
                                          "RPM_dataset.csv", "normal_run_data.txt")] == ["dos", "fuzzy", "gear",
                                                                                         "rpm", None]
    with pytest.raises(CanDataError, match="cannot tell the attack kind"):
        attack_from_name("capture.csv")


def test_folder_empty_file_and_missing_path(tmp_path):
    write(tmp_path, "DoS_dataset.csv", CSV_ROWS)
    write(tmp_path, "normal_run_data.txt", TXT_ROWS)
    write(tmp_path, "notes.md", "not a log")
    captures = load_captures(tmp_path)
    assert [c.attack for c in captures] == ["dos", None]
    with pytest.raises(CanDataError, match="holds no CAN frames"):
        load_capture(write(tmp_path, "Fuzzy_empty.csv", "\n\n"))
    with pytest.raises(CanDataError, match="not found"):
        load_captures(tmp_path / "absent.csv")
    assert load_capture(tmp_path / "DoS_dataset.csv", max_frames=2).frames.can_id.tolist() == [0x316, 0x18F]


def test_frame_tokens_layout():
    frames, _ = parse_lines(["1.0,05f0,2,01,00,R\n", "2.0,0000,8,00,00,00,00,00,00,00,ff,T\n"])
    tokens = frame_tokens(frames)
    assert tokens[0].tolist() == [ID0 + 0x5F0, DLC0 + 2, BYTE0 + 1, BYTE0 + 0] + [VOID] * 6
    assert tokens[1].tolist() == [ID0, DLC0 + 8] + [BYTE0] * 7 + [BYTE0 + 0xFF]
    extended, _ = parse_lines(["(1.0) can0 12345678#00\n"])
    assert frame_tokens(extended)[0, 0] == UNK_ID
    assert len(CLASSES) == 5 and np.all(tokens >= 0)


def test_parse_errors_are_value_errors_for_the_standalone_detector():
    with pytest.raises(CanLogError, match="<log> line 2"):
        parse_lines(["1.0,05f0,2,01,00,R\n", "broken\n"])
