"""Pedestal tables on the processing side: the processing's table <-> the run file's per-channel
rows, and board upload.

The per-channel rows (``agetdaq.readout.schema.PEDESTAL_DTYPE``, flags ``PedestalFlag``) cover the
mapping's strips and the FPN channels of every chip. Reading the table a pedestal run measured is
the store's (``agetdaq.readout.store.run.load_pedestals``). Board upload follows the card's
convention (PROTOCOL.md §2):
``subtract_ped`` ADDS the signed ``ped`` value, so ``ped = target - round(mean)`` puts every
baseline at ``target`` (250 like ``hped centermean``), and ``thr = target + round(k * sigma)``
(k = 4 by default: under the DAQ's 5 sigma hit threshold).
"""

from __future__ import annotations

import numpy as np

from agetdaq.protocol.channels import fpn_indices
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.datapath.processing.pedestal import PedestalTable
from agetdaq.readout.schema import PEDESTAL_DTYPE, PedestalFlag

_DEAD, _NOISY, _MASKED = (
    int(f) for f in (PedestalFlag.DEAD, PedestalFlag.NOISY, PedestalFlag.MASKED)
)


def table_rows(
    table: PedestalTable,
    mapping: StripMapping,
    k_sigma: float = 5.0,
    rst_len: int = 0,
    masked: np.ndarray | None = None,
) -> np.ndarray:
    """Per-channel rows: every strip, then the 4 FPN channels of every chip of the card."""
    n = mapping.n_strips
    cards = np.unique(mapping.card)
    fpn = fpn_indices(rst_len)
    rows = np.zeros(n + table.fpn_mean.size * len(cards), PEDESTAL_DTYPE)
    rows["card"][:n] = mapping.card
    rows["chip"][:n] = mapping.chip
    rows["channel"][:n] = mapping.daq_channel(rst_len)
    rows["strip"][:n] = np.arange(n)
    rows["mean"][:n] = table.mean
    rows["sigma"][:n] = table.noise
    rows["threshold"][:n] = np.where(np.isfinite(th := table.thresholds(k_sigma)), th, 0)
    flags = table.dead * _DEAD + table.noisy * _NOISY
    if masked is not None:
        flags = flags + masked * _MASKED
    rows["flags"][:n] = flags
    i = n
    for card in cards:
        for chip in range(table.fpn_mean.shape[0]):
            for k, idx in enumerate(fpn):
                rows[i] = (card, chip, idx, -1, table.fpn_mean[chip, k], 0.0, 0.0, 0)
                i += 1
    return rows


def table_from_rows(rows: np.ndarray, n_strips: int, n_chips: int = 4) -> PedestalTable:
    """Inverse of :func:`table_rows` for the strips (FPN means from the FPN rows)."""
    strips = rows[rows["strip"] >= 0]
    order = np.argsort(strips["strip"])
    s = strips[order]
    if len(s) != n_strips:
        raise ValueError(f"pedestal table has {len(s)} strips, expected {n_strips}")
    fpn_mean = np.full((n_chips, 4), 250.0, np.float32)
    f = rows[rows["strip"] < 0]
    for chip in range(n_chips):
        vals = f["mean"][f["chip"] == chip]
        fpn_mean[chip, : len(vals[:4])] = vals[:4]
    return PedestalTable(
        mean=s["mean"].astype(np.float32),
        sigma=s["sigma"].astype(np.float32),
        noise=s["sigma"].astype(np.float32),
        count=np.ones(n_strips),
        fpn_mean=fpn_mean,
        dead=(s["flags"] & _DEAD) != 0,
        noisy=(s["flags"] & _NOISY) != 0,
    )


PED_MIN, PED_MAX = -256, 255  # the card's signed ped values
THR_MAX = 511


def uploaded_ped(mean: np.ndarray | float, target: int = 250) -> np.ndarray:
    """The ``ped`` value :func:`upload_commands` sends for a raw pedestal ``mean``."""
    return np.clip(target - np.round(np.asarray(mean, np.float64)), PED_MIN, PED_MAX).astype(int)


def uploaded_rows(rows: np.ndarray, target: int = 250) -> np.ndarray:
    """The table the card's data fit after :func:`upload_commands` (pedestal subtraction on):
    every uploaded channel's mean shifted by its ``ped``, the rest as they were."""
    out = rows.copy()
    sent = _uploaded(rows)
    out["mean"][sent] = rows["mean"][sent] + uploaded_ped(rows["mean"][sent], target)
    return out


def _uploaded(rows: np.ndarray) -> np.ndarray:
    """The rows :func:`upload_commands` sends (FPN rows carry no noise estimate: not sent)."""
    return ~((rows["strip"] < 0) & (rows["sigma"] == 0))


ZS_K_SIGMA = 4.0  # card ZS threshold: one noise sigma under the DAQ's hit threshold (k_hit 5)


def upload_commands(rows: np.ndarray, target: int = 250, k_sigma: float = ZS_K_SIGMA) -> list[str]:
    """``ped`` and ``thr`` board commands that equalise baselines at ``target`` (§2). ``thr``
    is ``k_sigma`` x the noise the DAQ measured: under its own hit threshold (5 sigma) so the
    card's zero suppression, which cannot remove the common mode and rounds to 1 ADC, keeps
    every strip the DAQ would call hit (docs/CALIBRATION.md)."""
    out = []
    for r in rows[_uploaded(rows)]:
        ped = int(uploaded_ped(float(r["mean"]), target))
        thr = int(min(THR_MAX, target + round(k_sigma * float(r["sigma"]))))
        if r["flags"] & (_DEAD | _NOISY | _MASKED):
            thr = THR_MAX
        out.append(f"ped {r['chip']} {r['channel']} {ped}")
        out.append(f"thr {r['chip']} {r['channel']} {thr}")
    return out
