"""A solved feeder's outputs by name, without mosaik (IEEE 33 against Baran & Wu)."""

from __future__ import annotations

import pytest

from models.feeder import DSSFeeder
from models.grid_outputs import GRID_DICTS, GRID_SCALARS, grid_value, injection_name


def test_injection_names_are_unique_per_bus():
    assert injection_name("18", []) == "inj_18"
    assert injection_name("18", ["inj_18"]) == "inj_18_1"
    assert injection_name("18", ["inj_18", "inj_18_1", "inj_33"]) == "inj_18_2"


def test_every_output_of_the_base_case():
    res = DSSFeeder.open("ieee33").solve()
    out = {a: grid_value(res, a) for a in (*GRID_SCALARS, *GRID_DICTS)}
    # Baran & Wu, IEEE Trans. Power Delivery 4(2), 1989: 202.67 kW, Vmin 0.9131 pu at bus 18
    assert out["losses_mw"] * 1e3 == pytest.approx(202.67, rel=0.005)
    assert out["v_min_pu"] == pytest.approx(0.9131, abs=1e-3) and out["v_min_bus"] == "18"
    assert out["converged"] is True and out["pf_status"] == "ok" and out["pf_recovery"] == ""
    assert len(out["bus_v_pu"]) == 33 and out["bus_v_pu"]["18"] == pytest.approx(out["v_min_pu"])
    assert len(out["branch_p_mw"]) == 32
    with pytest.raises(ValueError):
        grid_value(res, "no_such_output")
