"""``agetdaq completion bash``: a bash completion script for the sub-commands and their options.

Install with ``agetdaq completion bash > ~/.local/share/bash-completion/completions/agetdaq``
(or ``eval "$(agetdaq completion bash)"`` in ~/.bashrc). zsh: ``autoload bashcompinit &&
bashcompinit`` first. Options are completed after ``-``, file names otherwise.
"""

from __future__ import annotations

import argparse

from agetdaq.readout.cli.common import add_common

_SCRIPT = """# bash completion of agetdaq (agetdaq completion bash)
_agetdaq() {
    local cur="${COMP_WORDS[COMP_CWORD]}" opts=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "%(commands)s --help --version" -- "$cur"))
        return
    fi
    case "${COMP_WORDS[1]}" in
%(cases)s
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}
complete -o filenames -F _agetdaq agetdaq
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "completion", help="print a shell completion script", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("shell", choices=("bash",), help="the shell (bash; zsh via bashcompinit)")
    add_common(p, json_result=False)
    p.set_defaults(func=run)


def script(parser: argparse.ArgumentParser) -> str:
    """The completion script of ``parser`` (visible options only: old spellings are left out)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cases = []
    for name, p in sub.choices.items():
        opts = sorted(
            o for a in p._actions if a.help != argparse.SUPPRESS for o in a.option_strings
        )
        cases.append(f'        {name}) opts="{" ".join(opts)}" ;;')
    return _SCRIPT % {"commands": " ".join(sub.choices), "cases": "\n".join(cases)}


def run(args: argparse.Namespace) -> int:
    from agetdaq.readout.cli import build_parser

    print(script(build_parser()), end="")
    return 0
