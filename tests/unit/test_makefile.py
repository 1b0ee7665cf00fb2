"""`make env`: when it syncs .venv again (a dry run in a copy of the Makefile; nothing is installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_env_syncs_again_when_its_recipe_changed_and_only_then(tmp_path: Path) -> None:
    """An environment synced before the recipe changed (e.g. before it compiled the packages to bytecode)
    is synced again by the next `make env`; otherwise a rerun does nothing."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for name in ("requirements.lock", "pyproject.toml", ".venv/.synced", ".uv-bootstrap/bin/uv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    (tmp_path / ".uv-bootstrap/bin/uv").chmod(0o755)
    for name, age in (("requirements.lock", 300), ("pyproject.toml", 300), ("Makefile", 200), (".venv/.synced", 100)):
        os.utime(tmp_path / name, (1_700_000_000 - age,) * 2)

    def dry_run() -> str:
        done = subprocess.run(["make", "-n", "env"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                              env={**os.environ, "PATH": "/usr/bin:/bin"})  # no system-wide uv: the bootstrap's
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "Nothing to be done" in dry_run()
    os.utime(tmp_path / "Makefile", (1_700_000_000,) * 2)  # the recipe changed after the last sync
    assert "pip sync" in dry_run()
