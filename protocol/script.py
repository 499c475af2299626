"""Command scripts in the feminos-daq dialect (PROTOCOL.md §3.5), parsed and checked up front.

Line rules (as feminos-daq reads a command file):

* empty lines and lines starting with a space, a tab, ``#`` or ``//`` are comments;
* a line starting with ``/*`` opens a comment block that ends with a line starting with ``*/``;
* ``LOOP n`` (index 1..n) or ``LOOP a TO b`` (index a..b) ... ``NEXT``; a word ``$loop`` is
  replaced by the innermost loop index in hex (``0x..``). Loops may nest (feminos-daq allows one
  level); ``END`` ends the script; ``exit``/``quit`` stop it;
* ``exec file`` includes another script, relative to the including file; with a ``root`` every
  script read, the first one and every ``exec`` at any depth (links resolved), must lie inside
  it, or the line is refused without the file being read;
* client commands: ``sleep s`` (0..3600 s), ``DAQ [N]``, ``fem N|0xMASK|*``,
  ``credits show|restore c t F|B``, ``event_builder n``, ``verbose``, ``vflags``,
  ``fopen [asc|bin]``, ``fclose``, ``path dir``, ``file_chunk MB``, ``LIST ped|thr <asic>``,
  ``drop credit``, ``delay credit [ms]``;
* everything else is a board command, checked with :func:`agetdaq.protocol.command_table.validate`.

The result is a flat list of :class:`Step` (loops expanded, at most ``max_steps``); any error raises
:class:`ScriptError` naming the file, the line and the offending text, before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agetdaq.protocol.command_table import CommandError, ParsedCommand, validate

STEP_KINDS = ("board", "sleep", "daq", "fem", "credits", "client")
DEFAULT_MAX_STEPS = 200_000
MAX_EXEC_DEPTH = 8
MAX_SLEEP_S = 3600.0  # a longer pause in a command script is a typo
DEFAULT_CREDITS = (16384, 8192, "B")  # feminos-daq's credit and request threshold, bytes
RUN_PROLOGUE = ("fem *", "clr tstamp", "clr evcnt")  # feminos-daq prepends these to run scripts


class ScriptError(ValueError):
    """A script that cannot run; the message names ``file:line`` and the offending text."""

    def __init__(self, file: str, line: int, reason: str, text: str = "") -> None:
        self.file, self.line, self.reason, self.text = file, line, reason, text
        super().__init__(f"{file}:{line}: {reason}" + (f": {text!r}" if text else ""))


@dataclass(frozen=True)
class Step:
    """One executable step. ``loops`` holds (loop id, index) pairs, outermost first."""

    kind: str
    text: str
    args: dict[str, Any] = field(default_factory=dict)
    file: str = "<text>"
    line: int = 0
    loops: tuple[tuple[int, int], ...] = ()
    command: ParsedCommand | None = None


@dataclass
class Script:
    source: str
    steps: list[Step]
    files: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __getitem__(self, i: int) -> Step:
        return self.steps[i]

    def board_lines(self) -> list[str]:
        return [s.text for s in self.steps if s.kind == "board"]

    def end_of_loop(self, i: int) -> int:
        """Index of the first step after the innermost loop around step ``i`` (to break out)."""
        if not self.steps[i].loops:
            return i + 1
        loop_id = self.steps[i].loops[-1][0]
        j = i + 1
        while j < len(self.steps) and any(lid == loop_id for lid, _ in self.steps[j].loops):
            j += 1
        return j


@dataclass
class _Line:
    file: str
    line: int
    text: str


@dataclass
class _Loop:
    file: str
    line: int
    first: int
    last: int
    body: list[_Line | _Loop]


_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|[0-9]+)")
_STOP = object()


def _int(text: str, src: _Line, what: str) -> int:
    if not _INT.fullmatch(text):
        raise ScriptError(src.file, src.line, f"{what} is not an integer", src.text)
    return int(text, 0) if text.lstrip("+-").lower().startswith("0x") else int(text, 10)


class _Parser:
    def __init__(self, max_steps: int, root: Path | None = None) -> None:
        self.max_steps = max_steps
        self.root = root  # every script read must lie inside it (None: anywhere)
        self.files: list[str] = []
        self.steps: list[Step] = []
        self.work = 0
        self.next_loop_id = 0

    # -- reading ---------------------------------------------------------------------------------

    def read(self, text: str, name: str, base: Path, stack: tuple[str, ...]) -> list[_Line | _Loop]:
        self.files.append(name)
        root: list[_Line | _Loop] = []
        open_loops: list[_Loop] = []
        block_start = 0
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.rstrip("\r\n")
            if block_start:
                if line.startswith("*/"):
                    block_start = 0
                continue
            if line.startswith("/*"):
                block_start = number
                continue
            if not line.strip() or line[0] in " \t#" or line.startswith("//"):
                continue
            src = _Line(name, number, line.strip())
            words = src.text.split()
            body = open_loops[-1].body if open_loops else root
            if words[0] == "LOOP":
                open_loops.append(self._loop_header(src, words))
                body.append(open_loops[-1])
            elif words[0] == "NEXT":
                if len(words) != 1:
                    raise ScriptError(name, number, "NEXT takes no argument", src.text)
                if not open_loops:
                    raise ScriptError(name, number, "NEXT without LOOP", src.text)
                open_loops.pop()
            elif words[0] == "END":
                break
            elif words[0] == "exec":
                body.extend(self._exec(src, words, base, stack))
            else:
                body.append(src)
        if block_start:
            raise ScriptError(name, block_start, "comment block opened here is never closed by */")
        if open_loops:
            loop = open_loops[-1]
            raise ScriptError(loop.file, loop.line, "LOOP without NEXT")
        return root

    def _loop_header(self, src: _Line, words: list[str]) -> _Loop:
        if len(words) == 2:
            first, last = 1, _int(words[1], src, "loop count")
            if last < 1:
                raise ScriptError(src.file, src.line, "loop count must be at least 1", src.text)
        elif len(words) == 4 and words[2] == "TO":
            first, last = _int(words[1], src, "loop start"), _int(words[3], src, "loop end")
            if first > last:
                raise ScriptError(src.file, src.line, "loop start is after its end", src.text)
        else:
            raise ScriptError(src.file, src.line, "expected LOOP n or LOOP a TO b", src.text)
        return _Loop(src.file, src.line, first, last, [])

    def _exec(self, src: _Line, words: list[str], base: Path, stack: tuple[str, ...]) -> list:
        if len(words) != 2:
            raise ScriptError(src.file, src.line, "expected exec <file>", src.text)
        path = (base / words[1]).resolve()
        if not inside(path, self.root):
            raise ScriptError(
                src.file, src.line, f"exec leaves the scripts' directory {self.root}", src.text
            )
        if str(path) in stack:
            raise ScriptError(
                src.file, src.line, "exec loops back to a script being read", src.text
            )
        if len(stack) >= MAX_EXEC_DEPTH:
            raise ScriptError(src.file, src.line, "exec nested too deep", src.text)
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScriptError(src.file, src.line, f"cannot read script: {exc}", src.text) from None
        return self.read(text, str(path), path.parent, (*stack, str(path)))

    # -- expanding -------------------------------------------------------------------------------

    def expand(self, nodes: list[_Line | _Loop], loops: tuple[tuple[int, int], ...]) -> object:
        for node in nodes:
            self._count(node)
            if isinstance(node, _Loop):
                loop_id = self.next_loop_id
                self.next_loop_id += 1
                for index in range(node.first, node.last + 1):
                    self._count(node)
                    if self.expand(node.body, (*loops, (loop_id, index))) is _STOP:
                        return _STOP
                continue
            step = self.step(node, loops)
            self.steps.append(step)
            if step.kind == "client" and step.args.get("action") == "exit":
                return _STOP
        return None

    def _count(self, node: _Line | _Loop) -> None:
        self.work += 1
        if self.work > self.max_steps:
            raise ScriptError(node.file, node.line, f"script expands past {self.max_steps} steps")

    def step(self, src: _Line, loops: tuple[tuple[int, int], ...]) -> Step:
        words = src.text.split()
        if "$loop" in words:
            if not loops:
                raise ScriptError(src.file, src.line, "$loop used outside a LOOP", src.text)
            index = loops[-1][1]
            value = f"0x{index:x}" if index >= 0 else str(index)
            words = [value if x == "$loop" else x for x in words]
        kind, args = _client(words, src)
        if args.get("save"):  # LIST ped|thr <asic> is sent as list ped|thr <asic>
            words = ["list", *words[1:]]
        text = " ".join(words)
        command = None
        if kind == "board":
            try:
                command = validate(text)
            except CommandError as exc:
                raise ScriptError(
                    src.file, src.line, f"card error {exc.code}: {exc.message}", src.text
                ) from None
            text = command.text
        return Step(kind, text, args, src.file, src.line, loops, command)


def _client(words: list[str], src: _Line) -> tuple[str, dict[str, Any]]:
    """Kind and arguments of a client-side line; ('board', {}) for a card command."""
    head, rest = words[0], words[1:]

    def bad(reason: str) -> ScriptError:
        return ScriptError(src.file, src.line, reason, src.text)

    def one_int(lo: int, hi: int, what: str) -> int:
        if len(rest) != 1:
            raise bad(f"expected {head} <{what}>")
        value = _int(rest[0], src, what)
        if not lo <= value <= hi:
            raise bad(f"{what} must be {lo}..{hi}")
        return value

    if head == "DAQ":
        return "daq", {"bytes": one_int(-1, 2**63 - 1, "bytes") if rest else None}
    if head in ("exit", "quit"):
        return "client", {"action": "exit"}
    if head == "sleep":
        if len(rest) != 1 or not re.fullmatch(r"[0-9]{1,12}(\.[0-9]{0,12})?", rest[0]):
            raise bad("expected sleep <seconds>")
        seconds = float(rest[0])
        if seconds > MAX_SLEEP_S:
            raise bad(f"sleep must be 0..{MAX_SLEEP_S:g} s")
        return "sleep", {"seconds": seconds}
    if head == "LIST":
        if len(rest) != 2 or rest[0] not in ("ped", "thr"):
            raise bad("expected LIST ped|thr <asic>")
        return "board", {"save": rest[0]}
    if head == "fem":
        if not rest:
            return "fem", {"query": True}
        if rest == ["*"]:
            return "fem", {"all": True}
        if rest[0].lower().startswith("0x"):
            return "fem", {"mask": one_int(1, 0xFFFFFFFF, "fem mask")}
        return "fem", {"fem": one_int(0, 31, "fem index")}
    if head == "credits":
        if rest == ["show"]:
            return "credits", {"action": "show"}
        if rest == ["restore"]:
            return "credits", dict(
                zip(("action", "credit", "threshold", "unit"), ("restore", *DEFAULT_CREDITS))
            )
        if len(rest) == 4 and rest[0] == "restore" and rest[3] in ("F", "B"):
            credit, threshold = _int(rest[1], src, "credit"), _int(rest[2], src, "threshold")
            if credit < 1 or threshold < 0:
                raise bad("credit must be >= 1 and threshold >= 0")
            return "credits", {
                "action": "restore",
                "credit": credit,
                "threshold": threshold,
                "unit": rest[3],
            }
        raise bad("expected credits show | credits restore <credit> <threshold> F|B")
    if head == "event_builder":
        return "client", {"action": head, "mode": one_int(0, 15, "mode")}
    if head == "file_chunk":
        return "client", {"action": head, "megabytes": one_int(1, 2048, "megabytes")}
    if head in ("verbose", "vflags"):
        return "client", {
            "action": head,
            "value": one_int(0, 0xFFFFFFFF, "value") if rest else None,
        }
    if head == "fopen":
        if rest not in ([], ["asc"], ["bin"]):
            raise bad("expected fopen [asc|bin]")
        return "client", {"action": head, "format": rest[0] if rest else "bin"}
    if head == "fclose":
        if rest:
            raise bad("fclose takes no argument")
        return "client", {"action": head}
    if head == "path":
        if len(rest) != 1:
            raise bad("expected path <directory>")
        return "client", {"action": head, "path": rest[0]}
    if head in ("drop", "delay") and rest[:1] == ["credit"]:
        if head == "drop" and len(rest) == 1:
            return "client", {"action": "drop credit"}
        if head == "delay" and len(rest) <= 2:
            ms = _int(rest[1], src, "delay") if len(rest) == 2 else 1000
            return "client", {"action": "delay credit", "ms": ms}
        raise bad(f"expected {head} credit" + (" [ms]" if head == "delay" else ""))
    return "board", {}


def inside(path: Path, root: Path | None) -> bool:
    """Whether ``path`` (resolved) lies inside ``root`` (None: no limit)."""
    if root is None:
        return True
    base = root.resolve()
    target = path.resolve()
    return target == base or base in target.parents


def parse_script_text(
    text: str,
    name: str = "<text>",
    base_dir: str | Path | None = None,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    prologue: bool = False,
    root: str | Path | None = None,
) -> Script:
    """Parse script text; ``exec`` paths are relative to ``base_dir`` (default: cwd) and, with
    ``root``, must stay inside it at every depth."""
    parser = _Parser(max_steps, Path(root) if root is not None else None)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    nodes = parser.read("\n".join(RUN_PROLOGUE), "<prologue>", base, ()) if prologue else []
    nodes += parser.read(text, name, base, (name,))
    parser.expand(nodes, ())
    files = tuple(f for f in parser.files if f != "<prologue>")
    return Script(name, parser.steps, files)


def parse_script_file(path: str | Path, **kwargs: Any) -> Script:
    """Parse a script file (``root``: it and every file it execs must lie inside; refused before
    it is read otherwise)."""
    path = Path(path)
    root = kwargs.get("root")
    if not inside(path, Path(root) if root is not None else None):
        raise ScriptError(str(path), 0, f"script outside the scripts' directory {root}")
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(str(path), 0, f"cannot read script: {exc}") from None
    return parse_script_text(text, str(path), path.parent, **kwargs)


def parse_script(path_or_text: str | Path, **kwargs: Any) -> Script:
    """Parse a script file or script text. A ``Path``, or a one-word string that names an existing
    file, contains a ``/`` or ends with ``.txt``, is a file; anything else is script text."""
    if isinstance(path_or_text, Path):
        return parse_script_file(path_or_text, **kwargs)
    one_word = len(path_or_text.split()) == 1 and "\n" not in path_or_text.strip()
    if one_word and (
        Path(path_or_text).is_file() or "/" in path_or_text or path_or_text.endswith(".txt")
    ):
        return parse_script_file(path_or_text.strip(), **kwargs)
    return parse_script_text(path_or_text, **kwargs)
