"""The grammar of the card commands (firmware V2.7, PROTOCOL.md §3.3-3.4) and one validator.

The card dispatches a line on *prefixes*, first match wins, in the order of :data:`COMMANDS`
(e.g. ``forceon_all`` before ``forceon``, ``tcm_bert`` before ``tcm``, ``fec ID`` before ``fec``).
:func:`validate` follows the same order and then checks the words strictly, so that a bad script is
rejected before anything reaches a board and the emulator can answer with an error code:

* ``ERR_UNKNOWN`` (-1): no command or sub-command of that name;
* ``ERR_SYNTAX`` (-10): missing, extra or malformed words;
* ``ERR_ILLEGAL_PARAMETER`` (-2): well-formed but out-of-range values, wildcard read-backs.

Numbers follow C ``%i`` (decimal, ``0x`` hex, leading-0 octal) unless the card reads ``%d``
(``hped`` selections, ``tdata`` address). Selections are ``*``, ``a:b`` (either order) or one index.
A missing value means read-back where the card reads back. The validator is stricter than the card:
the card silently masks out-of-range values and ignores extra words; here they are errors, and the
command word must be written in full (the card would take ``pedestal`` as ``ped``).

The command table itself (:class:`Spec`, :class:`Form`, :data:`COMMANDS`) is
:mod:`agetdaq.protocol.command_grammar`; :func:`validate` and the parse results are
:mod:`agetdaq.protocol.command_validator`. Both are used through this module.
"""

from __future__ import annotations

from agetdaq.protocol.command_grammar import COMMANDS, Spec
from agetdaq.protocol.command_validator import CommandError, ParsedCommand, Sel, find_spec, validate

__all__ = ["COMMANDS", "CommandError", "ParsedCommand", "Sel", "Spec", "find_spec", "validate"]
