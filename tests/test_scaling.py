"""Per-unit-preserving scaling: S × K, V × √K, ohms unchanged, per-unit results identical."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.feeder import DSSFeeder


@pytest.fixture(scope="module")
def ieee33() -> DSSFeeder:
    return DSSFeeder.open("ieee33")


@pytest.fixture(scope="module")
def ieee33_gw() -> DSSFeeder:
    return DSSFeeder.open("ieee33", scale=330)


def test_ieee33_times_330_is_a_gw_system_at_230_kv(ieee33, ieee33_gw):
    base, gw = ieee33.solve(), ieee33_gw.solve()
    assert gw.converged
    # per-unit voltages identical (< 1e-6 pu), node by node
    assert gw.node_names == base.node_names
    assert np.max(np.abs(gw.node_v_pu - base.node_v_pu)) < 1e-6
    # 3715 kW × 330 ≈ 1.23 GW at 12.66 kV × √330 ≈ 230 kV
    assert gw.total_load_mw == pytest.approx(3.715 * 330, rel=1e-6)
    assert 1.15e3 < gw.total_load_mw < 1.3e3
    assert ieee33_gw.data.base_kv_ll == pytest.approx(12.66 * math.sqrt(330), rel=1e-9)
    assert ieee33_gw.data.base_kv_ll == pytest.approx(230.0, abs=0.1)
    # losses and flows scale with K; loading percentages are per unit too
    assert gw.losses_mw == pytest.approx(330 * base.losses_mw, rel=1e-6)
    np.testing.assert_allclose(gw.line_p_mw, 330 * base.line_p_mw, rtol=1e-6)
    np.testing.assert_allclose(gw.line_loading_pct, base.line_loading_pct, atol=1e-6)


def test_scaled_feeder_data_keeps_ohms_and_per_unit(ieee33, ieee33_gw):
    a, b = ieee33.data, ieee33_gw.data
    assert b.scale == 330 and b.s_base_mva == pytest.approx(330 * a.s_base_mva)
    for x, y in zip(a.branches, b.branches):
        assert (x.from_bus, x.to_bus) == (y.from_bus, y.to_bus)
        assert y.r_ohm == pytest.approx(x.r_ohm, rel=1e-9) and y.x_ohm == pytest.approx(x.x_ohm, rel=1e-9)
        assert y.r_pu == pytest.approx(x.r_pu, rel=1e-9) and y.x_pu == pytest.approx(x.x_pu, rel=1e-9)
        assert y.rating_mva == pytest.approx(330 * x.rating_mva, rel=1e-9)
    for x, y in zip(a.loads, b.loads):
        assert y.p_mw == pytest.approx(330 * x.p_mw) and y.q_mvar == pytest.approx(330 * x.q_mvar)
    for x, y in zip(a.buses, b.buses):
        assert y.base_kv_ll == pytest.approx(math.sqrt(330) * x.base_kv_ll, rel=1e-9)


def test_injections_scale_with_k_in_absolute_mw():
    """An injection of K·p MW on the K-scaled feeder sees the same pu voltages as p MW."""
    small, big = DSSFeeder.open("ieee33"), DSSFeeder.open("ieee33", scale=330)
    small.add_injection("campus", "18", 1.0, 0.2)
    big.add_injection("campus", "18", 330.0, 66.0)
    a, b = small.solve(), big.solve()
    assert a.v_min_pu < 0.85  # the campus matters
    assert np.max(np.abs(a.bus_v_pu - b.bus_v_pu)) < 1e-6


@settings(max_examples=12, deadline=None)
@given(k=st.floats(min_value=0.01, max_value=1000.0, allow_nan=False))
def test_per_unit_results_do_not_depend_on_k(k):
    base = DSSFeeder.open("ieee69").base_case
    res = DSSFeeder.open("ieee69", scale=k).base_case
    assert res.converged
    assert np.max(np.abs(res.bus_v_pu - base.bus_v_pu)) < 1e-6
    assert res.losses_mw == pytest.approx(k * base.losses_mw, rel=1e-6)


def test_scaling_a_file_feeder_with_transformers_and_regulators(shared_dir):
    """IEEE 13 has a substation transformer, a regulator bank with line-drop compensation, an
    in-line transformer, capacitors and single-phase loads: all rated values scale."""
    master = shared_dir / "feeders" / "ieee13" / "IEEE13Nodeckt.dss"
    a = DSSFeeder.open(str(master)).base_case
    fb = DSSFeeder.open(str(master), scale=330)
    b = fb.base_case
    assert b.converged and b.node_names == a.node_names
    assert np.max(np.abs(b.node_v_pu - a.node_v_pu)) < 1e-6
    assert b.sub_p_mw == pytest.approx(330 * a.sub_p_mw, rel=1e-6)
    assert np.nanmax(np.abs(b.line_loading_pct - a.line_loading_pct)) < 1e-4
    assert fb.data.base_kv_ll == pytest.approx(115 * math.sqrt(330), rel=1e-6)
