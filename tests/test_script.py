"""The feminos-daq command-script dialect and the shipped board scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from agetdaq.protocol.command_table import validate
from agetdaq.protocol.script import (
    RUN_PROLOGUE,
    ScriptError,
    parse_script,
    parse_script_file,
    parse_script_text,
)

SCRIPTS = Path(__file__).parents[1] / "readout" / "scripts"


def texts(script) -> list[str]:
    return [s.text for s in script]


def test_comments_of_every_kind() -> None:
    script = parse_script_text(
        "# hash comment\n"
        "// slash comment\n"
        "/* block opens\n"
        "sca cnt 0x200\n"
        "still in the block\n"
        "*/ block closes\n"
        " sca enable 1\n"
        "\tsca enable 1\n"
        "\n"
        "   \n"
        "sca wckdiv 4\r\n"
        "/*\n"
        "*/\n"
        "sca start\n"
    )
    assert texts(script) == ["sca wckdiv 4", "sca start"]
    assert [s.line for s in script] == [11, 14]


def test_nested_loops_with_loop_variable() -> None:
    script = parse_script_text(
        "LOOP 2\naget $loop time 0x4\nLOOP 3 TO 4\nthr 0 5 $loop\nNEXT\nNEXT\nsca start\n"
    )
    assert texts(script) == [
        "aget 0x1 time 0x4", "thr 0 5 0x3", "thr 0 5 0x4",
        "aget 0x2 time 0x4", "thr 0 5 0x3", "thr 0 5 0x4",
        "sca start",
    ]  # fmt: skip
    assert [s.line for s in script] == [2, 4, 4, 2, 4, 4, 7]
    outer = script[0].loops[0][0]
    assert script[1].loops == ((outer, 1), (script[1].loops[1][0], 3))
    assert script[4].loops[1][0] != script[1].loops[1][0]  # a new inner loop each outer pass
    assert script[6].loops == ()
    assert script[1].command is not None and script[1].command.args["value"] == 3


def test_end_of_loop_breaks_out_of_the_innermost_loop() -> None:
    script = parse_script_text("DAQ 1000\nLOOP 5\nDAQ\nsleep 1\nNEXT\nsca stop\n")
    assert len(script) == 12
    assert script.end_of_loop(0) == 1
    assert script.end_of_loop(1) == 11 and script[11].text == "sca stop"
    assert script.end_of_loop(8) == 11


def test_end_and_exit_stop_the_script() -> None:
    assert texts(parse_script_text("sca start\nEND\nthis is not parsed\n")) == ["sca start"]
    script = parse_script_text("LOOP 3\nsca start\nexit\nNEXT\nsca stop\n")
    assert texts(script) == ["sca start", "exit"]
    assert script[1].kind == "client" and script[1].args == {"action": "exit"}
    assert parse_script_text("quit\n")[0].args == {"action": "exit"}


def test_client_commands() -> None:
    script = parse_script_text(
        "fem *\nfem 0x3\nfem 2\nfem\n"
        "DAQ\nDAQ -1\nDAQ 0\nDAQ 10000000\nsleep 2\nsleep 0.5\n"
        "credits show\ncredits restore 8 1 F\ncredits restore\n"
        "event_builder 1\nverbose 2\nvflags 0x1\nfopen\nfopen asc\nfclose\npath ../data\n"
        "file_chunk 1024\nLIST ped 0\nLIST thr *\ndrop credit\ndelay credit 50\n"
    )
    kinds = [(s.kind, s.args) for s in script]
    assert kinds[:4] == [
        ("fem", {"all": True}), ("fem", {"mask": 3}), ("fem", {"fem": 2}), ("fem", {"query": True}),
    ]  # fmt: skip
    assert [a["bytes"] for k, a in kinds[4:8]] == [None, -1, 0, 10_000_000]
    assert kinds[8] == ("sleep", {"seconds": 2.0}) and kinds[9][1]["seconds"] == 0.5
    assert kinds[10] == ("credits", {"action": "show"})
    assert kinds[11][1] == {"action": "restore", "credit": 8, "threshold": 1, "unit": "F"}
    assert kinds[12][1] == {"action": "restore", "credit": 16384, "threshold": 8192, "unit": "B"}
    assert kinds[13] == ("client", {"action": "event_builder", "mode": 1})
    assert kinds[16][1]["format"] == "bin" and kinds[17][1]["format"] == "asc"
    assert kinds[19][1] == {"action": "path", "path": "../data"}
    assert kinds[20][1]["megabytes"] == 1024
    assert (script[21].kind, script[21].text, script[21].args) == (
        "board",
        "list ped 0",
        {"save": "ped"},
    )
    assert script[22].text == "list thr *" and script[22].command.read
    assert kinds[23][1] == {"action": "drop credit"} and kinds[24][1]["ms"] == 50


def test_exec_includes_relative_to_the_script(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.txt").write_text("sca cnt 0x200\nexec deeper.txt\n")
    (tmp_path / "sub" / "deeper.txt").write_text("# deeper\nsca wckdiv 4\n")
    main = tmp_path / "main.txt"
    main.write_text("sca stop\nLOOP 2\nexec sub/inner.txt\nNEXT\nsca start\n")
    script = parse_script(main)
    once = ["sca cnt 0x200", "sca wckdiv 4"]
    assert texts(script) == ["sca stop", *once, *once, "sca start"]
    assert script[2].file == str((tmp_path / "sub" / "deeper.txt").resolve())
    assert script[2].line == 2
    assert len(script.files) == 3
    assert texts(parse_script(str(main))) == texts(script)  # a path given as a string
    with pytest.raises(ScriptError, match="cannot read script"):
        parse_script(str(tmp_path / "typo.txt"))
    assert texts(parse_script("sca start")) == ["sca start"]  # one line of script text


def test_exec_errors(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("exec b.txt\n")
    b.write_text("sca start\nexec a.txt\n")
    with pytest.raises(ScriptError, match=r"b\.txt:2: exec loops back"):
        parse_script_file(a)
    a.write_text("sca start\nexec missing.txt\n")
    with pytest.raises(ScriptError, match=rf"{a}:2: cannot read script"):
        parse_script_file(a)


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("sca start\nsca cnt 0x400\n", 2, "card error -2"),
        ("sca start\n\nfoo bar\n", 3, "card error -1: unknown command"),
        ("aget * gain\n", 1, "card error -10"),
        ("sca start\nNEXT\n", 2, "NEXT without LOOP"),
        ("sca start\nLOOP 3\nsca stop\n", 2, "LOOP without NEXT"),
        ("sca start\n/* open\nsca stop\n", 2, "never closed"),
        ("thr 0 5 $loop\n", 1, "$loop used outside a LOOP"),
        ("LOOP x\nNEXT\n", 1, "loop count is not an integer"),
        ("LOOP 0\nNEXT\n", 1, "at least 1"),
        ("LOOP 5 TO 2\nNEXT\n", 1, "start is after its end"),
        ("LOOP 1 2\nNEXT\n", 1, "expected LOOP n"),
        ("LOOP 2\nNEXT 1\n", 2, "NEXT takes no argument"),
        ("sleep\n", 1, "expected sleep"),
        ("sleep -1\n", 1, "expected sleep"),
        ("DAQ x\n", 1, "bytes is not an integer"),
        ("DAQ -2\n", 1, "bytes must be"),
        ("fem 32\n", 1, "fem index must be 0..31"),
        ("credits restore 8 1 X\n", 1, "expected credits"),
        ("event_builder 16\n", 1, "mode must be 0..15"),
        ("fopen txt\n", 1, "expected fopen"),
        ("LIST foo 0\n", 1, "expected LIST"),
        ("LIST ped 9\n", 1, "card error -2"),
        ("exec\n", 1, "expected exec"),
    ],
)
def test_errors_name_file_line_and_text(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse_script_text(text, name="job.txt")
    err = info.value
    assert (err.file, err.line) == ("job.txt", line)
    assert str(err).startswith(f"job.txt:{line}: ")
    assert fragment in str(err)


def test_error_message_quotes_the_offending_text() -> None:
    with pytest.raises(ScriptError, match=r"job\.txt:2: .*: 'aget \* time 16'$"):
        parse_script_text("sca start\naget * time 16\n", name="job.txt")


def test_expansion_limit() -> None:
    text = "LOOP 1000\nLOOP 1000\nsca start\nNEXT\nNEXT\n"
    with pytest.raises(ScriptError, match="expands past 5000 steps"):
        parse_script_text(text, max_steps=5000)
    with pytest.raises(ScriptError, match="expands past"):
        parse_script_text("LOOP 100000000\nNEXT\n")  # empty bodies count too
    assert len(parse_script_text("LOOP 100\nsca start\nNEXT\n", max_steps=500)) == 100


def test_prologue_and_normalised_text() -> None:
    script = parse_script_text("sca   cnt\t0x200\n", prologue=True)
    assert texts(script) == [*RUN_PROLOGUE, "sca cnt 0x200"]
    assert script[0].file == "<prologue>" and script[3].line == 1
    assert script.board_lines() == ["clr tstamp", "clr evcnt", "sca cnt 0x200"]


@pytest.mark.parametrize("name", ["startup.txt", "pedestal.txt", "run.txt"])
def test_shipped_scripts_validate(name: str) -> None:
    script = parse_script_file(SCRIPTS / name)
    assert len(script) > 10
    for step in script:
        if step.kind == "board":
            assert validate(step.text).text == step.text
    raw = [ln for ln in (SCRIPTS / name).read_text().splitlines() if ln and ln[0].isalnum()]
    assert all(ln.isascii() for ln in raw)


def test_pedestal_script_follows_the_typical_procedure() -> None:
    lines = texts(parse_script_file(SCRIPTS / "pedestal.txt"))
    order = ["trig_enable 0x1", "serve_target 2", "sca enable 1", "hped getsummary 0 *",
             "hped centermean * * 250", "subtract_ped 1", "hped setthr * * 250 5.0",
             "serve_target 1"]  # fmt: skip
    positions = [lines.index(x) for x in order]
    assert positions == sorted(positions)
    assert {"ped * * 0x0", "thr * * 0x0", "subtract_ped 0", "zero_suppress 0"} <= set(lines)


def test_run_script_settings() -> None:
    script = parse_script_file(SCRIPTS / "run.txt")
    lines = texts(script)
    for needed in ("zs_pre_post 8 4", "subtract_ped 1", "zero_suppress 1", "eof_on_eoe 1",
                   "serve_target 1", "aget * polarity 0x0", "aget * gain * 0x1",
                   "aget * time 0x4", "sca enable 1"):  # fmt: skip
        assert needed in lines, needed
    assert script[-1].kind == "daq" and script[-1].args == {"bytes": -1}
    assert lines.index("sca enable 1") < len(lines) - 1


def test_startup_script_powers_the_fecs() -> None:
    lines = texts(parse_script_file(SCRIPTS / "startup.txt"))
    assert lines.index("fec_enable 0") < lines.index("rbf resume") < lines.index("fec_enable 1")
    assert "mode aget" in lines and "daq 0xFFFFFF B" in lines
