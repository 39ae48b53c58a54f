"""The time series on disk without mosaik: segments read as one pyarrow dataset, columns
that appear late, and the final file equal to what the segments held."""

from __future__ import annotations

import math

import pytest

from scenarios.timeseries_io import SegmentWriter, consolidate, parts_dir, read_timeseries


def _write(path, rows, flush_every=2):
    w = SegmentWriter(path, flush_every=flush_every)
    for t, row in rows:
        w.append(t, row)
    w.flush()  # every row in a segment, the run not closed
    return w


def test_segments_read_with_late_columns_as_missing(tmp_path):
    path = tmp_path / "ts.parquet"
    rows = [(0, {"bus.2.v_pu": 1.0, "pf.converged": True}),
            (60, {"bus.2.v_pu": 0.99, "pf.converged": False}),
            (120, {"bus.2.v_pu": 0.98, "pf.converged": True, "dc.c.online": False,
                   "ctrl.status": "hold"}),
            (180, {"bus.2.v_pu": 0.97, "pf.converged": True, "dc.c.online": True,
                   "ctrl.status": "optimal"})]
    _write(path, rows)
    assert len(list(parts_dir(path).glob("part-*.parquet"))) == 2 and not path.exists()
    ts = read_timeseries(path)
    # the groups' order of docs/results.md, time_s as the index
    assert list(ts.columns) == ["pf.converged", "dc.c.online", "ctrl.status", "bus.2.v_pu"]
    assert ts.index.tolist() == [0, 60, 120, 180]
    assert ts["bus.2.v_pu"].tolist() == [1.0, 0.99, 0.98, 0.97]
    assert ts["pf.converged"].tolist() == [True, False, True, True]
    # the two rows of the first segment had no campus and no status column: missing there
    assert ts["dc.c.online"].tolist()[:2] == [None, None] and ts["dc.c.online"].tolist()[2:] == [False, True]
    assert ts["ctrl.status"].tolist() == [None, None, "hold", "optimal"]


def test_consolidate_keeps_what_the_segments_held(tmp_path):
    path = tmp_path / "ts.parquet"
    rows = [(t, {"sub.p_mw": 3.0 + t / 60, **({"bus.10.v_pu": 0.95} if t >= 120 else {})})
            for t in range(0, 300, 60)]
    _write(path, rows, flush_every=2)
    before = read_timeseries(path)
    consolidate(path)
    assert path.is_file() and not parts_dir(path).exists()
    after = read_timeseries(path)
    assert after.equals(before)
    assert after["sub.p_mw"].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert [math.isnan(x) for x in after["bus.10.v_pu"]] == [True, True, False, False, False]


def test_no_segments_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_timeseries(tmp_path / "absent.parquet")
