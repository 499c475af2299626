"""55Fe spectrum, model kernels against references, fit failures, report and TOML config.
The synthetic sampler here is shared by the other calibration tests."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agetdaq.readout.analysis.calibration.fit import FitConfig, fit_spectrum
from agetdaq.readout.analysis.calibration.model import (
    ARGON,
    K_ALPHA,
    PARAM_NAMES,
    XENON,
    SourceLines,
    deviance_residuals,
    deviance_residuals_reference,
    expected_counts,
    expected_counts_reference,
    lines_for_gas,
    model_and_jacobian,
)
from agetdaq.readout.analysis.calibration.report import fit_to_dict, json_safe, spectrum_plot
from agetdaq.readout.analysis.calibration.spectrum import Spectrum

FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))
GAIN0 = 250.0  # ADC per keV at 100 %
THR_ADC = 100.0  # threshold on the energy sum: 0.4 keV at 100 % gain, 2 keV at 20 %


def fe55_adc(
    rng: np.random.Generator,
    n: int,
    gain: float,
    resolution: float,
    threshold_adc: float = THR_ADC,
    threshold_width_adc: float = 5.0,
    escape_kev: tuple[float, ...] = (2.94,),
    escape_weights: tuple[float, ...] = (1.0,),
    escape_fraction: float = 0.10,
    kb_ratio: float = 0.14,
    bkg_fraction: float = 0.10,
    bkg_slope_kev: float = 2.0,
    offset_adc: float = 0.0,
    shape: str = "gamma",
) -> np.ndarray:
    """``n`` event energies (ADC) above a smeared threshold: Mn K-alpha 5.90 keV and K-beta
    6.49 keV (``kb_ratio`` of K-alpha), escape line(s), an exponential background, ADC = keV x
    gain + offset. Lines have the relative sigma ``resolution / 2.355 * sqrt(5.9 / E)`` and are
    gamma-distributed (avalanche charge, as in the emulator) or, with ``shape="gauss"``,
    Gaussian."""
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        m = 2 * (n - have) + 50
        u = rng.random(m)
        e = np.where(rng.random(m) < kb_ratio / (1.0 + kb_ratio), 6.49, 5.90)
        esc = rng.choice(escape_kev, size=m, p=np.array(escape_weights) / sum(escape_weights))
        e = np.where(u < escape_fraction, esc, e)
        if shape == "gamma":
            k = (FWHM / resolution) ** 2 * e / 5.90
            e = rng.gamma(k, e / k)
        else:
            e = e + resolution / FWHM * np.sqrt(5.90 * e) * rng.standard_normal(m)
        e = np.where(rng.random(m) < bkg_fraction, rng.exponential(bkg_slope_kev, m), e)
        adc = e * gain + offset_adc
        seen = adc + threshold_width_adc * rng.standard_normal(m) >= threshold_adc
        out.append(adc[seen])
        have += int(seen.sum())
    return np.concatenate(out)[:n]


def scenario(n_points: int = 9) -> list[tuple[float, float]]:
    """(gain fraction, FWHM/E) from 100 % / 18 % down to 20 % / 50 % (CAST-like drift)."""
    f = np.linspace(1.0, 0.2, n_points)
    return [(float(x), 0.18 + (0.50 - 0.18) * (1.0 - x) / 0.8) for x in f]


# --- spectrum -------------------------------------------------------------------------------


def test_spectrum_fill_counts_every_value():
    s = Spectrum(n_bins=10, adc_max=100.0)
    s.fill(np.array([-1.0, 0.0, 9.99, 10.0, 99.9, 100.0, 250.0, np.nan, np.inf]))
    assert s.counts[0] == 2 and s.counts[1] == 1 and s.counts[9] == 1
    assert (s.total, s.underflow, s.overflow, s.invalid) == (4, 1, 2, 2)


@given(st.lists(st.floats(-50, 5000, allow_nan=False), max_size=200), st.integers(1, 64))
def test_spectrum_conserves_entries(values, n_bins):
    s = Spectrum(n_bins=n_bins, adc_max=4096.0)
    s.fill(np.array(values))
    assert s.total + s.underflow + s.overflow + s.invalid == len(values)
    ref, _ = np.histogram(np.clip(values, -1, None), bins=n_bins, range=(0.0, 4096.0))
    inside = [v for v in values if 0.0 <= v < 4096.0]
    assert s.total == len(inside) == ref.sum() - sum(1 for v in values if v == 4096.0)


def test_spectrum_merge_rebin_roundtrip():
    rng = np.random.default_rng(0)
    a = Spectrum.from_values(rng.uniform(0, 8192, 1000))
    b = Spectrum.from_values(rng.uniform(0, 8192, 500))
    a += b
    assert a.total == 1500
    r = a.rebin(8)
    assert r.n_bins == 256 and r.total == 1500 and r.bin_width == pytest.approx(32.0)
    assert np.array_equal(r.counts, a.counts.reshape(256, 8).sum(axis=1))
    back = Spectrum.from_dict(json.loads(json.dumps(a.to_dict())))
    assert np.array_equal(back.counts, a.counts) and back.same_binning(a)
    with pytest.raises(ValueError, match="different binning"):
        a.merge(Spectrum(n_bins=1024))
    with pytest.raises(ValueError, match="divide"):
        a.rebin(3)
    with pytest.raises(ValueError, match="shape"):
        Spectrum.from_dict({**a.to_dict(), "counts": [1, 2, 3]})


# --- model kernels against their references -----------------------------------------------


@pytest.mark.parametrize("shape", ["gamma", "gauss"])
@pytest.mark.parametrize("lines", [ARGON, XENON])
def test_model_kernel_matches_reference_and_its_jacobian(lines, shape):
    p = np.array([50.0, 0.45, 800.0, 90.0, 120.0, 2.0, 100.0, 6.0, 7.0])
    edges = np.linspace(-20.0, 700.0, 97)
    m, jac = model_and_jacobian(edges, p, lines, shape=shape)
    ref = expected_counts_reference(edges, p, lines, shape)
    assert np.allclose(m, ref, rtol=1e-10, atol=1e-10)
    for k, name in enumerate(PARAM_NAMES):
        h = 1e-6 * max(abs(p[k]), 1.0)
        up, down = p.copy(), p.copy()
        up[k] += h
        down[k] -= h
        numeric = expected_counts_reference(edges, up, lines, shape) - expected_counts_reference(
            edges, down, lines, shape
        )
        numeric /= 2 * h
        scale = np.max(np.abs(numeric)) + 1e-12
        assert np.max(np.abs(numeric - jac[:, k])) / scale < 1e-5, name


@pytest.mark.parametrize("shape", ["gamma", "gauss"])
def test_model_counts_add_up_to_amplitudes(shape):
    p = np.array([100.0, 0.2, 1000.0, 100.0, 50.0, 1.5, -np.inf, 1.0, 0.0])
    edges = np.linspace(0.0, 3000.0, 3001)
    total = expected_counts(edges, p, ARGON, shape).sum()
    assert total == pytest.approx(1000.0 * 1.14 + 100.0 + 50.0, rel=1e-6)


def test_gamma_line_has_its_mean_and_width_and_leans_right():
    """K-alpha alone at 50 % FWHM/E: mean gain x 5.9 keV, sigma FWHM/E / 2.355 of it, the mode
    below the mean; at 5 % FWHM/E it is the Gaussian."""
    lines = SourceLines("Ar", (K_ALPHA,), ARGON.escape)
    edges = np.linspace(0.0, 3000.0, 3001)
    x = 0.5 * (edges[1:] + edges[:-1])
    p = np.array([100.0, 0.5, 1000.0, 0.0, 0.0, 1.5, -np.inf, 1.0, 0.0])
    m = expected_counts(edges, p, lines, "gamma")
    mean = np.sum(m * x) / m.sum()
    sigma = np.sqrt(np.sum(m * (x - mean) ** 2) / m.sum())
    assert mean == pytest.approx(590.0, rel=1e-4)
    assert sigma / mean == pytest.approx(0.5 / FWHM, rel=1e-3)
    assert x[np.argmax(m)] < mean - 10.0
    p[1] = 0.05
    gamma, gauss = (
        expected_counts(edges, p, lines, "gamma"),
        expected_counts(edges, p, lines, "gauss"),
    )
    assert np.max(np.abs(gamma - gauss)) < 0.02 * gauss.max()
    with pytest.raises(ValueError, match="unknown line shape"):
        expected_counts(edges, p, lines, "lorentz")


def test_deviance_kernel_matches_reference():
    rng = np.random.default_rng(1)
    model = np.concatenate([rng.uniform(0.0, 30.0, 200), [0.0, 1e-15, 5.0]])
    data = np.concatenate([rng.poisson(model[:200]).astype(float), [0.0, 0.0, 5.0]])
    r, slope = deviance_residuals(data, model)
    r_ref, slope_ref = deviance_residuals_reference(data, model)
    assert np.allclose(r, r_ref) and np.allclose(slope, slope_ref)
    m = np.maximum(model, 1e-12)
    assert np.sum(r**2) == pytest.approx(
        2 * np.sum(m - data + np.where(data > 0, data * np.log(np.maximum(data, 1) / m), 0))
    )


def test_lines_for_gas():
    assert lines_for_gas(" xe ") is XENON and lines_for_gas("Argon") is ARGON
    assert ARGON.escape_fraction_of_ref == pytest.approx(2.94 / 5.90)
    with pytest.raises(ValueError, match="unknown gas"):
        lines_for_gas("neon")


# --- failures ---------------------------------------------------------------------------------


def test_empty_and_too_few_counts_fail_with_reason():
    empty = fit_spectrum(Spectrum())
    assert not empty.ok and empty.reason == "empty spectrum"
    rng = np.random.default_rng(2)
    few = fit_spectrum(Spectrum.from_values(fe55_adc(rng, 60, 200.0, 0.2)))
    assert not few.ok and "too few counts" in few.reason
    assert math.isnan(few.gain) and math.isnan(few.resolution)


@pytest.mark.parametrize("seed", range(12))
def test_noise_spectra_are_rejected(seed):
    rng = np.random.default_rng(100 + seed)
    kind = seed % 3
    if kind == 0:
        adc = rng.uniform(0, rng.uniform(500, 4000), int(rng.integers(300, 5000)))
    elif kind == 1:
        adc = rng.exponential(rng.uniform(100, 1000), int(rng.integers(300, 5000)))
    else:
        adc = rng.normal(rng.uniform(500, 3000), 2000, 3000)
    fit = fit_spectrum(Spectrum.from_values(adc))
    assert not fit.ok
    assert fit.reason


def test_failed_fit_serialises_without_numbers_posing_as_results():
    fit = fit_spectrum(Spectrum())
    d = fit_to_dict(fit)
    json.dumps(d, allow_nan=False)
    assert d["ok"] is False and d["reason"] == "empty spectrum"
    assert "gain_adc_per_kev" not in d and d["chi2_ndf"] is None
    plot = spectrum_plot(Spectrum(), fit)
    assert [s.name for s in plot.series] == ["data"] and "fit failed" in plot.notes[0]


def test_good_fit_report_and_plot_data():
    rng = np.random.default_rng(3)
    spectrum = Spectrum.from_values(fe55_adc(rng, 2000, 200.0, 0.2))
    fit = fit_spectrum(spectrum)
    d = fit_to_dict(fit)
    json.dumps(d, allow_nan=False)
    assert d["ok"] and d["gain_adc_per_kev"] == pytest.approx(fit.gain)
    plot = spectrum_plot(spectrum, fit, threshold_adc=THR_ADC)
    names = [s.name for s in plot.series]
    assert names == ["data", "fit", "model outside the fit window", "Mn Kα + Kβ", "Ar escape",
                     "background"]  # fmt: skip
    data, model = plot.series[0], plot.series[1]
    assert plot.x_label == "energy (keV)" and plot.secondary_x[:2] == (fit.gain, fit.offset_adc)
    assert np.array_equal(data.yerr, np.sqrt(data.y))  # Poisson error bars on the data
    gain = fit.gain
    in_window = (data.x * gain > fit.window_adc[0]) & (data.x * gain < fit.window_adc[1])
    assert np.nansum(model.y) == pytest.approx(data.y[in_window].sum(), rel=0.05)
    assert np.all(np.isnan(plot.series[2].y[in_window]))  # dotted outside the window only
    assert {a.text.split()[1] for a in plot.labels} == {"Kα", "Kβ", "escape"}
    assert [m.label.split()[0] for m in plot.marks][:1] == ["DAQ"]
    assert plot.marks[0].x == pytest.approx(THR_ADC / gain)
    json.dumps(plot.to_dict(), allow_nan=False)
    wide = Spectrum.from_values(fe55_adc(rng, 2000, 60.0, 0.5, 60.0))
    gauss = fit_spectrum(wide, FitConfig(line_shape="gauss"))
    plot = spectrum_plot(wide, gauss)  # drawn with the fit's own line shape, everywhere
    total = np.where(np.isnan(plot.series[1].y), plot.series[2].y, plot.series[1].y)
    centers = plot.series[0].x * gauss.gain
    half = 0.5 * (centers[1] - centers[0])
    edges = np.append(centers - half, centers[-1] + half)
    assert gauss.ok and np.allclose(total, gauss.model_counts(edges), rtol=1e-6, atol=1e-9)
    assert json_safe({"a": np.float32(np.nan), "b": np.arange(2)}) == {"a": None, "b": [0, 1]}


def test_fit_config_from_toml():
    cfg = FitConfig.from_toml('[calibration.fit]\ngas = "Xe"\nmin_counts = 50\n')
    assert cfg.lines is XENON and cfg.min_counts == 50
    assert FitConfig.from_toml('[calibration.fit]\nline_shape = "gauss"\n').line_shape == "gauss"
    with pytest.raises(ValueError, match="unknown line shape"):
        FitConfig.from_toml('[calibration.fit]\nline_shape = "landau"\n')
    with pytest.raises(ValueError, match="unknown key"):
        FitConfig.from_toml("[calibration.fit]\nwidth = 3\n")
    with pytest.raises(ValueError, match="unknown gas"):
        FitConfig.from_toml('[calibration.fit]\ngas = "Kr"\n')
