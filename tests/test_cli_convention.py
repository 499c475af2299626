"""One convention across the sub-commands (readout/cli/common.py): ``--board HOST:PORT``,
``--source`` in captures, ``-o/--output`` with ``--force``, ``-v/-q`` everywhere, ``--json`` where
a result is printed, exit codes 0/1/2 (3 damaged, 4 newer format), errors on stderr, no traceback
for any argument or file (a hypothesis fuzz over the file commands), non-UTF-8 file names, a
parser that loads nothing heavy, old spellings that still work, bash completion; the plain-h5py
recipe of docs/FILE_FORMAT.md; a capture's board found on any port, or the sources named.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from damaged_files import damaged, write_aqs, write_capture, write_run_file
from hypothesis import given, settings
from hypothesis import strategies as st

from agetdaq.readout import schema as S
from agetdaq.readout.cli import COMMANDS, build_parser, main
from agetdaq.readout.cli.emulate import board_address
from agetdaq.readout.store.writer import RunWriter

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
PY = [sys.executable]
HEAVY = ("numpy", "numba", "scipy", "h5py", "hdf5plugin", "zmq", "PyQt6", "pyqtgraph", "uproot")
RESULT_COMMANDS = {"emulate", "run", "pedestal", "dump", "inspect", "convert", "calibrate",
                   "replay", "keys"}  # fmt: skip
OLD_SPELLINGS = {"--bec", "--listen", "--to", "--host", "--port"}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _visible(p: argparse.ArgumentParser) -> set[str]:
    return {o for a in p._actions if a.help != argparse.SUPPRESS for o in a.option_strings}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    good = write_run_file(tmp / "good.h5", n=60)
    pool = {"good": good, **damaged(good, tmp)}
    pool["capture"] = write_capture(tmp / "board.pcap")
    pool["aqs"] = write_aqs(tmp / "R00012_test.aqs")
    pool["folder"] = tmp / "folder.h5"
    pool["folder"].mkdir()
    pool["missing"] = tmp / "missing.h5"
    odd = Path(os.fsdecode(bytes(tmp) + b"/run-\xff\xfe.h5"))
    shutil.copy(good, odd)
    pool["non_utf8"] = odd
    return pool


def test_building_the_parser_loads_nothing_heavy() -> None:
    code = (
        "import json, sys\n"
        "from agetdaq.readout.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([*PY, "-c", code], capture_output=True, text=True, env=ENV,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"agetdaq --help imports {heavy}"
    assert "agetdaq.readout.cli.run" in loaded  # the parser's own modules were counted
    ours = [m for m in loaded if m.startswith("agetdaq.")]
    assert len(ours) <= len(COMMANDS) + 4, ours  # cli, its commands, common: nothing else


def test_every_command_follows_the_convention() -> None:
    parsers = _subparsers()
    assert set(parsers) == set(COMMANDS)
    for name, p in parsers.items():
        opts = _visible(p)
        assert {"-v", "--verbose", "-q", "--quiet"} <= opts, name
        assert ("--json" in opts) == (name in RESULT_COMMANDS), name
        assert not opts & OLD_SPELLINGS, (name, opts & OLD_SPELLINGS)
        for a in p._actions:
            if a.help == argparse.SUPPRESS:  # an old spelling
                continue
            if "--board" in a.option_strings:
                assert a.metavar == "HOST:PORT", name
            if "--output" in a.option_strings:
                assert a.option_strings[:2] == ["-o", "--output"], name
                assert name == "keys" or "--force" in opts, name  # keys never replaces keys
        assert "exit status: 0 ok, 1 failure" in (p.epilog or ""), name
    for name in ("run", "serve", "pedestal", "emulate", "replay"):
        assert "--board" in _visible(parsers[name]), name
    for name in ("dump", "inspect", "convert", "replay"):
        assert "--source" in _visible(parsers[name]), name


def test_old_spellings_still_work_and_say_they_are_deprecated(tmp_path, capsys) -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "--bec", "h:1"]).board == "h:1"
    assert parser.parse_args(["replay", "c.pcap", "--listen", "h:2"]).board == "h:2"
    assert parser.parse_args(["replay", "c.pcap", "--to", "h:3"]).board == "h:3"
    assert parser.parse_args(["convert", "a", "b", "--board", "h:4"]).source == "h:4"
    assert parser.parse_args(["dump", "a", "--port", "5"]).old_port == "5"
    assert board_address(parser.parse_args(["emulate", "--host", "h", "--port", "6"])) == ("h", 6)
    code = main(["run", "--bec", "127.0.0.1:9", "--config", str(tmp_path / "none.toml")])
    err = capsys.readouterr().err
    assert code == 2 and "--bec is deprecated: use --board" in err and "none.toml" in err


@pytest.mark.parametrize("name", COMMANDS)
def test_help_of_every_command(name, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and f"usage: agetdaq {name}" in out and "exit status" in out


def test_results_are_text_by_default_json_on_request_errors_on_stderr(files, capsys) -> None:
    assert main(["inspect", str(files["good"])]) == 0
    out, err = capsys.readouterr()
    assert "events: 60" in out.replace("  ", "") and not err
    assert main(["inspect", str(files["good"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == 60
    assert main(["dump", str(files["missing"])]) == 1
    out, err = capsys.readouterr()
    assert not out and err.startswith("agetdaq dump: ") and "no such file" in err
    with pytest.raises(SystemExit) as exc:
        main(["dump", str(files["good"]), "--events", "5:2"])
    assert exc.value.code == 2 and "the end comes before the start" in capsys.readouterr().err
    assert main(["dump", str(files["good"]), "-o", str(files["good"])]) == 2  # never replaced
    assert "exists" in capsys.readouterr().err


def test_a_capture_s_board_is_found_on_any_port_or_the_sources_are_named(files, capsys) -> None:
    assert main(["dump", str(files["capture"]), "--json"]) == 0
    out, _ = capsys.readouterr()
    assert len(out.splitlines()) == 20  # the board sends from port 40000, not 1122
    # no traffic of the chosen source: not readable (exit 1, it was 0 events and exit 0), the
    # sources the capture holds named, for every file command
    for argv in (["dump", "-q"], ["inspect", "--json"], ["convert", "-o", "none.h5"]):
        code = main([*argv, str(files["capture"]), "--source", ":1122"])
        out, err = capsys.readouterr()
        assert code == 1 and err.startswith(f"agetdaq {argv[0]}: "), (argv, code, err)
        assert "10.0.0.2:40000 (20 datagrams, board frames)" in err, err
        assert "{" not in out and "none.h5" not in os.listdir(files["capture"].parent)
    # past the end of a capture with board traffic: an empty result, not an error
    assert main(["dump", str(files["capture"]), "--events", "100:"]) == 0
    assert "board traffic" not in capsys.readouterr().err
    h5 = str(files["capture"].with_suffix(".h5"))
    assert main(["convert", str(files["capture"]), "-o", h5]) == 0
    assert "20 events" in capsys.readouterr().out


def test_force_replaces_an_output_only_once_the_conversion_can_be_made(files, capsys, tmp_path):
    """``convert --force`` to an existing run file replaced nothing (an unexpected WriterError:
    the run writer never replaces a file); now the output is removed just before the writing,
    after every check, and never when it is a folder or the conversion impossible."""
    out = tmp_path / "board.h5"
    for _ in range(2):
        assert main(["convert", str(files["capture"]), "-o", str(out), "--force"]) == 0
        assert "20 events" in capsys.readouterr().out
    assert main(["convert", str(files["capture"]), "-o", str(out)]) == 2  # no --force
    assert "exists (use --force" in capsys.readouterr().err
    aqs = tmp_path / "keep.aqs"
    aqs.write_bytes(b"mine")
    assert main(["convert", str(files["capture"]), "-o", str(aqs), "--force"]) == 2
    assert "no conversion from pcap to aqs" in capsys.readouterr().err
    assert aqs.read_bytes() == b"mine"  # an impossible conversion removes nothing
    folder = tmp_path / "folder.h5"
    folder.mkdir()
    assert main(["convert", str(files["capture"]), "-o", str(folder), "--force"]) == 2
    assert "is a directory" in capsys.readouterr().err and folder.is_dir()


def test_non_utf8_file_names_as_real_processes(files) -> None:
    odd = os.fsencode(files["non_utf8"])
    agetdaq = [*PY, "-m", "agetdaq"]
    for argv, code in (
        ([b"inspect", odd, b"--json"], 0),
        ([b"dump", odd, b"--events", b"0:2"], 0),
        ([b"dump", odd[:-3] + b"\xfd.h5"], 1),
    ):
        proc = subprocess.run([*map(os.fsencode, agetdaq), *argv], capture_output=True, env=ENV,
                              timeout=120)  # fmt: skip
        err = proc.stderr.decode(errors="replace")
        assert proc.returncode == code, err
        assert b"Traceback" not in proc.stderr
        if code:
            assert "\\xfd" in err  # the name, escaped
        elif argv[0] == b"inspect":
            assert json.loads(proc.stdout)["file"].endswith("run-\udcff\udcfe.h5")


def test_bash_completion_script() -> None:
    proc = subprocess.run([*PY, "-m", "agetdaq", "completion", "bash"], capture_output=True,
                          text=True, env=ENV, timeout=120)  # fmt: skip
    assert proc.returncode == 0
    script = proc.stdout
    assert all(f"        {name}) opts=" in script for name in COMMANDS)
    assert "--bec" not in script and "complete -o filenames -F _agetdaq agetdaq" in script
    if shutil.which("bash"):
        check = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        assert check.returncode == 0, check.stderr


def test_the_plain_h5py_recipe_of_file_format_md_reads_a_run_file(files) -> None:
    text = (ROOT / "docs" / "FILE_FORMAT.md").read_text()
    recipe = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(recipe.strip().splitlines()) <= 11  # + the blank line after the imports
    proc = subprocess.run([*PY, "-c", recipe, str(files["good"])], capture_output=True,
                          text=True, env=ENV, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "12 card,chip,aget_channel,axis,strip" in out and "'stop_reason': 'converted'" in out
    assert out.count("[") >= 8  # time bins and ADC of event 0's four channels


# ---- fuzz: any argument, any file, never a traceback ------------------------------------------

JUNK = st.sampled_from(["", "0", "-1", "5:2", "nan", "inf", "1e999", "x:y", ":", "::", "\udcff",
                        "99999999999999999999", "-", "--", " ", "1:", ":3", "a" * 300])  # fmt: skip
NUMBER = st.one_of(st.integers(-5, 10**6).map(str), JUNK)
FILE_KEYS = ("good", "cut50", "cut2k", "zero_mid", "random", "empty", "foreign", "future",
             "capture", "aqs", "folder", "missing", "non_utf8")  # fmt: skip
_outputs = itertools.count()


def _options(command: str, files: dict, tmp: Path) -> st.SearchStrategy[list[str]]:
    path = st.sampled_from(FILE_KEYS).map(lambda k: str(files[k]))
    out_file = st.sampled_from([".aqs", ".h5", ".root", ".txt", ""]).map(
        lambda ext: str(tmp / f"out{next(_outputs)}{ext}")
    )
    common = [st.just(["-q"]), st.just(["-v"]), st.just(["--json"]), st.just(["--force"])]
    per = {
        "dump": [st.tuples(st.just("--events"), NUMBER), st.tuples(st.just("--source"), JUNK),
                 st.tuples(st.just("--port"), NUMBER), st.tuples(st.just("--rst-len"), NUMBER),
                 st.tuples(st.just("-o"), out_file)],
        "inspect": [st.just(("--check",))],
        "convert": [st.tuples(st.just("-o"), out_file), st.just(("--built",)),
                    st.tuples(st.just("--chunk-mb"), NUMBER), st.tuples(st.just("--fill"), JUNK),
                    st.tuples(st.just("--level"), NUMBER), st.tuples(st.just("--source"), JUNK),
                    st.tuples(st.just("--waveforms"), st.sampled_from(["raw", "stored", "x"])),
                    st.tuples(st.just("--mapping"), path), st.just(("--verify",))],
        "calibrate": [st.tuples(st.just("--every"), NUMBER),
                      st.tuples(st.just("--minutes"), NUMBER),
                      st.tuples(st.just("--regions"), JUNK),
                      st.tuples(st.just("--reference"), path),
                      st.tuples(st.just("-o"), out_file),
                      st.tuples(st.just("--threshold-adc"), NUMBER)],
    }[command]  # fmt: skip
    pick = st.lists(st.one_of(*per, *common), max_size=4)
    return pick.map(lambda items: [str(x) for item in items for x in item])


@settings(max_examples=50, derandomize=True)  # the same 50 cases in every CI run
@given(data=st.data())
def test_fuzzed_file_commands_never_end_in_a_traceback(files, tmp_path_factory, data) -> None:
    tmp = tmp_path_factory.mktemp("fuzz", numbered=True)
    command = data.draw(st.sampled_from(["dump", "inspect", "convert", "calibrate"]))
    target = str(files[data.draw(st.sampled_from(FILE_KEYS))])
    argv = [command, target, *data.draw(_options(command, files, tmp))]
    if command in ("convert", "calibrate") and "-o" not in argv:
        argv += ["-o", str(tmp / f"out{next(_outputs)}.aqs")]
    if command == "calibrate":
        argv.append("--no-plots")
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            code = exc.code
    text = err.getvalue()
    assert code in (0, 1, 2, 3, 4), (argv, code, text)
    assert "Traceback" not in text and "unexpected error" not in text, (argv, text)


def test_dump_of_a_non_utf8_name_into_an_aqs_says_its_name_escaped(tmp_path, capsys) -> None:
    """Found by the fuzz: the text summary printed the name's surrogates (unexpected error)."""
    name = tmp_path / os.fsdecode(b"run-\xff\xfe.h5")
    with RunWriter(name, S.EVENT_DTYPE):
        pass
    assert main(["dump", str(name), "-o", str(tmp_path / "out.aqs")]) == 0
    assert "unexpected error" not in capsys.readouterr().err
    assert "run-\\xff\\xfe.h5" in (tmp_path / "out.aqs").read_text(errors="replace")
