"""Shared pytest fixtures. Keep this small; each fixture says who reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
"""The reference data folder (../shared): Baran & Wu tables and OpenDSS test feeders."""


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared, or skip the test when it is absent (tests that read reference data)."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"reference data folder {SHARED_DIR} is absent")
    return SHARED_DIR
