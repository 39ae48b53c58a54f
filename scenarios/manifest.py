"""``manifest.json``: what is needed to repeat a run (DESIGN.md §5).

It holds the resolved scenario (every default filled in), the seed, the versions of the
packages that shape the numbers, the git revision of this checkout with a dirty flag, the
platform and a UTC timestamp, plus whatever the runner adds (``extra``: wall time, timing
split, CLI options). :class:`Manifest` is its model: ``write(path)``, ``Manifest.read(path)``.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from scenarios.config import Scenario
from scenarios.json_file import JsonFile

logger = logging.getLogger(__name__)

#: Distributions whose versions go into the manifest (the ones that shape the results).
PACKAGES = ("mosaik", "mosaik-api-v3", "opendssdirect.py", "dss-python", "pyomo", "highspy",
            "simpy", "numpy", "pandas", "pyarrow", "pydantic", "matplotlib")

REPO = Path(__file__).resolve().parents[1]


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (``None`` when it is not installed), and
    ``python``."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def git_revision(repo: Path = REPO) -> dict[str, Any]:
    """``{"revision": sha or None, "dirty": bool or None, "error": ...}`` for ``repo``.

    ``dirty`` means tracked files differ from the revision (untracked files do not count).
    Outside a git checkout, or without git, revision and dirty are ``None`` and ``error``
    says why.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=20, check=True).stdout.strip()

    try:
        rev = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except FileNotFoundError:
        return {"revision": None, "dirty": None, "error": "git is not installed"}
    except subprocess.CalledProcessError as exc:
        msg = (exc.stderr or "").strip().splitlines()
        return {"revision": None, "dirty": None,
                "error": msg[0] if msg else "not a git checkout"}
    except subprocess.TimeoutExpired:
        return {"revision": None, "dirty": None, "error": "git timed out"}
    return {"revision": rev, "dirty": dirty}


class Manifest(JsonFile):
    """``manifest.json`` (DESIGN.md §5): the keys every run has, typed; what the runner
    adds (``siting_file``, ``placements``, ``schedule_mw``, ``realtime``, ``timing_s``, ...)
    kept as given."""

    scenario: dict[str, Any]
    scenario_path: str | None
    seed: int
    packages: dict[str, str | None]
    git: dict[str, Any]
    platform: dict[str, Any]
    timestamp_utc: str


def build_manifest(scenario: Scenario, seed: int, extra: dict | None = None,
                   repo: Path = REPO) -> Manifest:
    """The manifest (see the module docstring)."""
    return Manifest.from_dict({
        "scenario": scenario.model_dump(mode="json"),
        "scenario_path": scenario.path,
        "seed": int(seed),
        "packages": package_versions(),
        "git": git_revision(repo),
        "platform": {
            "system": platform.system(), "release": platform.release(),
            "machine": platform.machine(), "python_implementation": platform.python_implementation(),
            "python": sys.version.split()[0], "cpu_count": _cpu_count(),
        },
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    })


def _cpu_count() -> int | None:
    import os

    return os.cpu_count()


def write_manifest(out_dir: str | Path, scenario: Scenario, seed: int, extra: dict | None = None,
                   repo: Path = REPO) -> Path:
    """Write ``manifest.json`` into ``out_dir`` and return its path."""
    return build_manifest(scenario, seed, extra, repo).write(Path(out_dir) / "manifest.json")
