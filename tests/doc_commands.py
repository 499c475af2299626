"""The command lines a user copies from README.md, docs/*.md and gui/README.md, ready to run.

A documented command is a line of a code block (fenced, any language but ``text``, or indented by
four spaces after a blank line) that starts with ``agetdaq`` or ``make`` (``$ `` prompts are
removed, ``\\`` continues a line, ``# ...`` ends it). Blocks fenced as ``text`` are synopses
(``agetdaq calibrate RUN.h5 [MORE.h5 ...]``) and are not run.

When run by tests/test_documented_commands.py, only port numbers and paths are substituted: every
loopback port becomes a free one (the same documented port always maps to the same free port),
absolute paths are moved under the test's directory, and commands run in that directory.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ("agetdaq", "make")
LOOPBACK = ("127.0.0.1", "localhost", "0.0.0.0")


@dataclass
class DocCommand:
    doc: str  # file, relative to the repository
    line: int  # line number of the command's first line
    text: str  # the command as documented (continuations joined, comment removed)

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def documents() -> list[Path]:
    """README first, then docs/ in name order, then the monitor's README: the order users read."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "gui" / "README.md"]


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each code block that is not a ``text`` synopsis."""
    lines = text.split("\n")
    out: list[tuple[int, list[str]]] = []
    i = 0
    prev_blank = True
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", line)
        if fence:
            lang, mark = fence.group(2).lower(), fence.group(1)
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(mark):
                j += 1
            if lang != "text":
                out.append((i + 2, lines[i + 1 : j]))
            i, prev_blank = j + 1, False
            continue
        if prev_blank and line.startswith("    ") and line.strip():
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            out.append((i + 1, [x[4:] for x in lines[i:j]]))
            i, prev_blank = j, False
            continue
        prev_blank = not line.strip()
        i += 1
    return out


def commands_in(path: Path) -> list[DocCommand]:
    rel = str(path.relative_to(ROOT))
    out: list[DocCommand] = []
    for first, lines in _blocks(path.read_text(encoding="utf-8")):
        k = 0
        while k < len(lines):
            raw = lines[k].strip()
            if raw.startswith("$ "):
                raw = raw[2:].strip()
            start = k
            while raw.endswith("\\") and k + 1 < len(lines):
                k += 1
                raw = raw[:-1].rstrip() + " " + lines[k].strip()
            k += 1
            if raw.split(" ", 1)[0] not in PROGRAMS:
                continue
            words = shlex.split(raw, comments=True)
            out.append(DocCommand(rel, first + start, shlex.join(words)))
    return out


def all_commands() -> list[DocCommand]:
    return [c for doc in documents() for c in commands_in(doc)]


_ADDRESS = re.compile(
    r"^(?P<scheme>tcp://|udp://)?(?P<host>[A-Za-z][\w.-]*|\d+\.\d+\.\d+\.\d+|\*):(?P<port>\d{2,5})$"
)
_PORT_OPTIONS = ("--port", "--metrics-port")


@dataclass
class Substitution:
    """Ports and paths of documented commands, mapped into a test's sandbox."""

    sandbox: Path
    free_port: object  # () -> int
    ports: dict[int, int] = field(default_factory=dict)

    def port(self, documented: int) -> int:
        if documented not in self.ports:
            self.ports[documented] = self.free_port()
        return self.ports[documented]

    def argv(self, cmd: DocCommand) -> list[str]:
        out: list[str] = []
        words = cmd.argv
        for i, w in enumerate(words):
            if i and words[i - 1] in _PORT_OPTIONS and w.isdigit():
                out.append(str(self.port(int(w))))
                continue
            out.append(self._word(w, cmd))
        return out

    def _word(self, w: str, cmd: DocCommand) -> str:
        if "=" in w and w.startswith("--"):
            key, value = w.split("=", 1)
            return f"{key}={self._word(value, cmd)}"
        m = _ADDRESS.match(w)
        if m:
            if m.group("host") not in LOOPBACK:
                raise ValueError(
                    f"{cmd}: address {w} is not loopback; a copyable command must run on this "
                    "machine (put real addresses in prose or a ```text block)"
                )
            return f"{m.group('scheme') or ''}{m.group('host')}:{self.port(int(m.group('port')))}"
        if w.startswith("/") and not w.startswith("/dev/"):
            return str(self.sandbox / w.lstrip("/"))
        if "/" in w and not w.startswith("-") and (ROOT / w).exists():
            return str(ROOT / w)  # a file the repository ships (docs name it from its root)
        return w
