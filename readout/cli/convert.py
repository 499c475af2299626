"""``agetdaq convert IN OUT``: .aqs / pcap -> run file, run file -> .aqs, any -> ROOT.

The input is read with ``open_run`` (its format from its first bytes), the output format comes from
its suffix (.h5, .aqs, .root). Prints a JSON summary; ``--verify`` then reads both files back and
compares their events (exit 1 when they differ). Exit status 2 for bad arguments or an impossible
conversion.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agetdaq.readout.store.convert import ConvertReport


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert between .aqs, pcap, run .h5 and feminos-daq ROOT files",
        description=(
            "RUN.aqs RUN.h5 | RUN.pcap RUN.h5 | RUN.h5 RUN.aqs | RUN.h5|RUN.aqs|RUN.pcap RUN.root"
        ),
    )
    p.add_argument("input", type=Path, help="input file (.aqs, .pcap/.pcapng or run .h5)")
    p.add_argument("output", type=Path, help="output file (.h5, .aqs or .root)")
    p.add_argument("--force", "-f", action="store_true", help="overwrite the output")
    p.add_argument("--verify", action="store_true", help="read both back and compare the events")
    g = p.add_argument_group("to .aqs")
    g.add_argument("--built", action="store_true", help="wrap events in built-event markers")
    g.add_argument("--chunk-mb", type=int, help="start a new -NNN sub-run file past this size")
    g = p.add_argument_group("to .h5")
    g.add_argument("--mapping", metavar="FILE.csv", help="strip mapping (default: BabyIAXO)")
    g.add_argument("--board", metavar="HOST[:PORT]", help="board to take from a capture")
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
    p.set_defaults(func=convert_command)


def _board(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    host, _, port = text.partition(":")
    return host, int(port or 0)


def convert(source: str | Path, output: str | Path, **options: object) -> ConvertReport:
    """Dispatch on the two formats. Options: ``built``, ``chunk_bytes`` (to .aqs), ``board`` (from
    a capture), ``lut`` (to .h5), and :func:`agetdaq.readout.store.rootexport.export_root`'s (to
    .root)."""
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


def convert_command(args: argparse.Namespace) -> int:
    from agetdaq.readout.store.convert import ConvertError, compare_events, record_events

    if args.output.exists() and not args.force:
        print(f"agetdaq: {args.output} exists (use --force to overwrite)", file=sys.stderr)
        return 2
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
    }
    try:
        options["board"] = _board(args.board)
        if args.mapping:
            from agetdaq.protocol.mapping import StripMapping
            from agetdaq.readout.datapath.processing.waveforms import StripLayout

            options["lut"] = StripLayout.from_mapping(StripMapping.load(args.mapping)).lut
        report = convert(args.input, args.output, **options)
    except (ConvertError, ValueError, OSError) as exc:
        print(f"agetdaq: convert: {exc}", file=sys.stderr)
        return 2
    summary: dict[str, object] = {"convert": report.__dict__}
    status = 0
    if args.verify:
        if args.output.suffix.lower() == ".root":
            summary["verify"] = "skipped: ROOT files are checked with uproot, not here"
        else:
            result = compare_events(record_events(args.input), record_events(args.output))
            summary["verify"] = result
            same = result["events_a"] == result["events_b"] and not result["differ"]
            status = 0 if same else 1
    print(json.dumps(summary, indent=1, default=str))
    return status
