"""The gain-map figure: each cell's relative gain and error, or the reason it has none; cells
crossed by bad strips hatched; the reference and the X-rays left out explained."""

from __future__ import annotations

import math

from agetdaq.readout.analysis.calibration.gainmap import GainMapResult
from agetdaq.readout.analysis.calibration.plotdata import PlotData, reason_kind, short_reason

MAX_LISTED = 6  # distinct failure reasons listed


def gainmap_plot(result: GainMapResult, attribute: str = "rel_gain") -> PlotData:
    """The map with each cell's value and error, or the reason it has none; cells crossed by
    bad strips hatched."""
    cfg = result.config
    title = "relative gain map" if attribute == "rel_gain" else f"gain map ({attribute})"
    plot = PlotData("gainmap", title, "x (mm)", "y (mm)")
    plot.image = result.map_of(attribute)
    plot.extent = (*cfg.x_range_mm, *cfg.y_range_mm)
    text = [["" for _ in range(cfg.nx)] for _ in range(cfg.ny)]
    errs = result.map_of(f"{attribute}_err") if attribute == "rel_gain" else None
    for r in result.regions:
        if r.ok and math.isfinite(getattr(r, attribute)):
            v = getattr(r, attribute)
            e = errs[r.iy, r.ix] if errs is not None else math.nan
            text[r.iy][r.ix] = f"{v:.3f}" + (f"\n±{e:.3f}" if math.isfinite(e) else "")
        else:
            text[r.iy][r.ix] = "no gain:\n" + short_reason(r.fit.reason)
        if r.bad_strips:
            plot.hatched.append((r.ix, r.iy))
    plot.cell_text = text
    good = [r for r in result.regions if r.ok]
    ref = result.reference_peak_adc
    if math.isfinite(ref):
        how = {
            "median": f"median of the {len(good)} fitted cells",
            "global": "fit of all cells summed",
        }.get(str(cfg.reference), "given")
        plot.notes.append(f"reference K-alpha {ref:.1f} ADC ({how})")
    else:
        plot.notes.append("no reference: no cell could be fitted")
    plot.footer += _map_footer(result)
    return plot


def _map_footer(result: GainMapResult) -> list[str]:
    lines = []
    failed: dict[str, list] = {}
    for r in result.regions:
        if not r.ok:
            failed.setdefault(reason_kind(r.fit.reason), []).append(r)
    for what, regions in sorted(failed.items(), key=lambda kv: -len(kv[1]))[:MAX_LISTED]:
        cells = " ".join(f"({r.ix},{r.iy})" for r in regions)
        lines.append(
            f"{len(regions)} cell(s) without gain ({what}): {cells}; e.g. {regions[0].reason}"
        )
    bad = result.bad_strips
    if bad:
        excluded = sum(r.excluded for r in result.regions)
        lines.append(
            f"hatched: cells crossed by bad strips ({', '.join(bad.names)}); {excluded} X-rays "
            f"within {result.config.bad_strip_margin_mm:g} mm of them left out (the charge they "
            "lose on the strip would read as a lower gain)"
        )
    return lines
