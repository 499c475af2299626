"""``agetdaq convert IN -o OUT``: .aqs / pcap -> run file, run file -> .aqs, any -> ROOT.

The input is read with ``open_run`` (its format from its first bytes), the output format comes from
its suffix (.h5, .aqs, .root); ``OUT`` may also follow ``IN`` as a second argument. An existing
output is replaced only with ``--force``. Prints a summary (``--json``: the report); ``--verify``
then reads both files back and compares their events (exit 1 when they differ).

Exit status: 0 ok, 1 the input cannot be read (or --verify found a difference), 2 bad arguments or
an impossible conversion, 3 the input is damaged (the output holds what could be read before the
damage, which is named on stderr), 4 a run file of a newer format version.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from agetdaq.readout.cli.common import (
    Exit,
    OutputError,
    add_common,
    add_output,
    add_source,
    alias,
    emit,
    fail,
    file_error_code,
    make_room,
    note,
    parse_source,
)

if TYPE_CHECKING:
    from agetdaq.readout.store.convert import ConvertReport


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert between .aqs, pcap, run .h5 and feminos-daq ROOT files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="input file (.aqs, .pcap/.pcapng or run .h5)")
    p.add_argument("out", type=Path, nargs="?", metavar="OUT", help="same as -o OUT")
    add_output(p, "OUT", "output file (.h5, .aqs or .root)")
    p.add_argument("--verify", action="store_true", help="read both back and compare the events")
    g = p.add_argument_group("to .aqs")
    g.add_argument("--built", action="store_true", help="wrap events in built-event markers")
    g.add_argument("--chunk-mb", type=int, help="start a new -NNN sub-run file past this size")
    g = p.add_argument_group("to .h5")
    g.add_argument("--mapping", metavar="FILE.csv", help="strip mapping (default: BabyIAXO)")
    add_source(g)
    alias(g, "--board", dest="source", new="--source")
    g = p.add_argument_group("to .root")
    g.add_argument(
        "--fill",
        default="baseline",
        help="value of the bins zero suppression left out: baseline (default), zero or a number",
    )
    g.add_argument(
        "--compression", help="zstd (default, level 1), lzma (feminos-daq's), zlib, lz4, none"
    )
    g.add_argument("--level", type=int, help="compression level")
    g.add_argument(
        "--waveforms",
        default="auto",
        choices=("auto", "raw", "stored"),
        help="raw datagrams (every channel, as feminos-daq) or stored waveforms; auto = raw",
    )
    g.add_argument("--detector", help="detector name for the run tree")
    g.add_argument("--drift-field", type=float, help="drift field, V/cm/bar")
    g.add_argument("--mesh-voltage", type=float, help="mesh voltage, V")
    g.add_argument("--pressure", type=float, help="detector pressure, bar")
    add_common(p)
    p.set_defaults(func=convert_command)


def convert(
    source: str | Path, output: str | Path, replace: bool = False, **options: object
) -> ConvertReport:
    """Dispatch on the two formats (``replace``: an existing output is removed once the
    conversion is known to be possible). Options: ``built``, ``chunk_bytes`` (to .aqs),
    ``board`` (from a capture), ``lut`` (to .h5), and
    :func:`agetdaq.readout.store.rootexport.export_root`'s (to .root)."""
    from agetdaq.readout.store.convert import ConvertError, output_format
    from agetdaq.readout.store.errors import RunFileError
    from agetdaq.readout.store.run import sniff_format

    source, output = Path(source), Path(output)
    if not source.exists():
        raise ConvertError(f"{source}: no such file")
    if source.resolve() == output.resolve():
        raise ConvertError("input and output are the same file")
    try:
        src = sniff_format(source)
    except RunFileError as exc:
        raise ConvertError(str(exc)) from None
    dst = output_format(output)
    if not (dst == "root" or (dst, src) in (("h5", "aqs"), ("h5", "pcap"), ("aqs", "h5"))):
        raise ConvertError(f"no conversion from {src} to {dst} (aqs/pcap->h5, h5->aqs, any->root)")
    if replace:
        make_room(output, force=True)  # never a folder, never a run file a live process writes

    def pick(*names: str) -> dict[str, object]:
        return {k: v for k, v in options.items() if k in names and v is not None}

    if dst == "h5" and src in ("aqs", "pcap"):
        from agetdaq.readout.datapath.offline import to_h5

        return to_h5(source, output, **pick("board", "lut"))
    if dst == "aqs" and src == "h5":
        from agetdaq.readout.store.convert import h5_to_aqs

        return h5_to_aqs(source, output, **pick("built", "chunk_bytes"))
    if dst == "root":
        from agetdaq.readout.store.rootexport import ROOT_OPTIONS, export_root

        return export_root(source, output, **pick(*ROOT_OPTIONS))
    raise ConvertError(f"no conversion from {src} to {dst} (aqs/pcap->h5, h5->aqs, any->root)")


def _usage(args: argparse.Namespace) -> tuple[Path, dict[str, object]]:
    """The output and the converter's options; ValueError for bad arguments."""
    if args.out is not None and args.output is not None:
        raise ValueError("give the output once (OUT or -o OUT)")
    output = args.output if args.output is not None else args.out
    if output is None:
        raise ValueError("no output: convert IN -o OUT")
    output = Path(output)
    if (output.exists() or output.is_symlink()) and not args.force:
        raise ValueError(f"{output} exists (use --force to replace it)")
    if args.chunk_mb is not None and args.chunk_mb < 1:
        raise ValueError("--chunk-mb must be >= 1")
    options: dict[str, object] = {
        "built": args.built,
        "chunk_bytes": args.chunk_mb << 20 if args.chunk_mb else None,
        "fill": args.fill,
        "compression": args.compression,
        "level": args.level,
        "waveforms": args.waveforms,
        "detector": args.detector,
        "drift_field": args.drift_field,
        "mesh_voltage": args.mesh_voltage,
        "pressure": args.pressure,
        "board": parse_source(args.source),
    }
    return output, options


def convert_command(args: argparse.Namespace) -> int:
    from agetdaq.readout.cli.dump import no_board_traffic
    from agetdaq.readout.store.convert import ConvertError, compare_events, record_events
    from agetdaq.readout.store.errors import DamagedRunFileError, RunFileError
    from agetdaq.readout.store.run import open_run

    try:
        output, options = _usage(args)
    except ValueError as exc:
        return fail(f"{exc}", Exit.USAGE)
    try:  # an unreadable input is a failure (1), not a usage error
        with open_run(args.input, board=options["board"]) as run:  # type: ignore[arg-type]
            notices, damage = list(run.notices), list(run.damage)
            empty = no_board_traffic(run)
    except RunFileError as exc:
        return fail(f"{exc}", file_error_code(exc))
    except OSError as exc:
        return fail(f"{args.input}: {exc.strerror or exc}")
    if empty:  # a capture without the board's traffic: nothing to convert
        return fail(f"{args.input}: {empty}", Exit.FAILURE)
    for text in notices:
        if not args.quiet:
            note(args, f"{args.input}: {text}")
    try:
        if args.mapping:
            from agetdaq.protocol.mapping import MappingError, StripMapping
            from agetdaq.readout.datapath.processing.waveforms import StripLayout

            try:
                options["lut"] = StripLayout.from_mapping(StripMapping.load(args.mapping)).lut
            except MappingError as exc:
                return fail(f"{exc}", Exit.USAGE)
        report = convert(args.input, output, replace=args.force, **options)
    except OutputError as exc:
        return fail(f"{exc}", exc.code)
    except DamagedRunFileError as exc:
        partial = f"; {output} holds what was read before" if output.exists() else ""
        return fail(f"{args.input}: damaged: {exc}{partial}", Exit.DAMAGED)
    except RunFileError as exc:
        return fail(f"{exc}", file_error_code(exc))
    except (ConvertError, ValueError) as exc:
        return fail(f"{exc}", Exit.USAGE)
    except OSError as exc:
        return fail(f"{exc.strerror or exc} ({exc.filename or output})")
    summary: dict[str, object] = {"convert": report.__dict__}
    status = Exit.OK
    if args.verify:
        if output.suffix.lower() == ".root":
            summary["verify"] = "skipped: ROOT files are checked with uproot, not here"
        else:
            result = compare_events(record_events(args.input), record_events(output))
            summary["verify"] = result
            same = result["events_a"] == result["events_b"] and not result["differ"]
            status = Exit.OK if same else Exit.FAILURE
    text = f"{report.events} events, {report.datagrams} datagrams: {report.source} -> {output}"
    text += "".join(f"\nnote: {n}" for n in report.notes)
    if "verify" in summary:
        text += f"\nverify: {summary['verify']}"
    emit(args, summary, text)
    if status:
        fail("--verify: the events differ")
    for item in damage:
        fail(f"{args.input}: damaged: {item}")
    return Exit.DAMAGED if damage and not status else status
