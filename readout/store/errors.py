"""Errors of the run-file readers: every message names the file and says what is wrong."""

from __future__ import annotations


class RunFileError(RuntimeError):
    """A run file (.h5, .aqs, .pcap/.pcapng) that cannot be read."""


class UnknownFormatError(RunFileError):
    """Neither an agetdaq run file, an .aqs run nor a capture (or no such file)."""


class DamagedRunFileError(RunFileError):
    """A file of a known format whose content cannot be read (bad header, corrupt table)."""


class NewerFormatError(RunFileError):
    """A run file of a newer format version than this agetdaq reads (upgrade to read it)."""
