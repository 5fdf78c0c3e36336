"""The committed lock files pin one resolution: what `make install` installs (requirements.lock)
and its exports (uv.lock, pylock.toml, requirements.txt) name the same version of every package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", re.MULTILINE)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(text: str) -> dict[str, str]:
    return {_norm(n): v for n, v in PIN.findall(text)}


def test_every_lock_file_pins_the_versions_make_install_installs() -> None:
    installed = _pins((ROOT / "requirements.lock").read_text())
    assert installed, "requirements.lock pins nothing"
    uv_lock = {
        _norm(p["name"]): p["version"]
        for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]
        if "version" in p and p["name"] != "pm-accounting-pipeline"
    }
    pylock = {
        _norm(p["name"]): p["version"] for p in tomllib.loads((ROOT / "pylock.toml").read_text())["packages"]
    }
    plain = _pins((ROOT / "requirements.txt").read_text())
    for name, other in (("uv.lock", uv_lock), ("pylock.toml", pylock), ("requirements.txt", plain)):
        # The exports are universal, so they may add platform-only packages (pywin32, colorama, ...),
        # never drop or change one that is installed here.
        differing = {k: (v, other.get(k)) for k, v in installed.items() if other.get(k) != v}
        assert not differing, f"{name} disagrees with requirements.lock: {differing}"


def test_duckdb_stays_on_the_1_x_line() -> None:
    # duckdb 2.x breaks the polars IO path the lake and warehouse rely on.
    assert _pins((ROOT / "requirements.lock").read_text())["duckdb"].startswith("1.")
