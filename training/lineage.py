"""Where a trained model came from: the code, the libraries, the data and the split of its run.

Read when a run is logged (never on import): the package version of leadscore, the git commit of the
checkout it runs from (when it runs from one), the versions of the libraries that shape the model, the
data fingerprint (:func:`features.fingerprint.data_fingerprint`) and the dates of the split. The MLflow
run records them as params and tags, the registered version as tags and a description, the model card in
its ``## Lineage`` section.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

# the distributions whose version can change a model, its figures or how it loads
LIBRARIES = ("lightgbm", "numpy", "pandas", "scikit-learn", "scipy", "optuna", "pyarrow", "mlflow", "pydantic")
PACKAGE = "leadscore"
GIT_TIMEOUT_SECONDS = 5.0
UNKNOWN = "unknown"


def library_versions() -> dict[str, str]:
    """``{"python": "3.11.9", "lightgbm": "4.5.0", ...}``; a library that is not installed is ``not installed``."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _git(folder: Path, *args: str) -> str | None:
    """The output of ``git -C folder args`` (stripped), None when git is missing or fails."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_commit(package_dir: Path | None = None) -> tuple[str, str]:
    """``(commit, dirty)`` of the git checkout the code runs from: ``dirty`` is ``true`` when tracked files
    differ from the commit. ``(unknown, unknown)`` when the code is not a tracked file of a git checkout (an
    installed wheel; a package under a venv that a repository ignores), or git is not there."""
    folder = package_dir or Path(__file__).resolve().parent
    tracked = _git(folder, "ls-files", "--", "__init__.py")
    commit = _git(folder, "rev-parse", "HEAD") if tracked else None
    if not commit:
        return UNKNOWN, UNKNOWN
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return commit, UNKNOWN if status is None else str(bool(status)).lower()


def code_version() -> dict[str, str]:
    """``leadscore_version`` (the installed distribution), ``git_commit`` and ``git_dirty``
    (:func:`source_commit`)."""
    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        version = UNKNOWN
    commit, dirty = source_commit()
    return {"leadscore_version": version, "git_commit": commit, "git_dirty": dirty}


def split_params(split: Mapping[str, Any]) -> dict[str, str]:
    """The scalar entries of a run's split (row counts, as-of ranges, horizon, gaps) as ``split.<key>``
    params; nested entries (the search's summary and trials) are logged elsewhere."""
    return {f"split.{key}": str(value) for key, value in split.items()
            if isinstance(value, str | int | float | bool) or value is None}


def lineage_tags(code: Mapping[str, str], fingerprint: Mapping[str, str], seed: int) -> dict[str, str]:
    """The run's ``leadscore.*`` lineage tags: code version, data hash and seed."""
    return {**{f"leadscore.{k}": v for k, v in code.items()},
            "leadscore.data_hash": fingerprint.get("hash", UNKNOWN), "leadscore.seed": str(seed)}


# where things live, not how the model is made: left out of the configuration hash (the data's content is in the
# data fingerprint, the points rules' in their own hash), so one project on two machines hashes alike
LOCATIONS = {"data": ("source", "quarantine_dir"), "training": ("points_rules",)}


def config_hash(sections: Mapping[str, Any]) -> str:
    """First 16 hex digits of a SHA-256 of the resolved configuration sections (defaults included), without
    the paths and URLs of :data:`LOCATIONS`."""
    kept = {name: {k: v for k, v in value.items() if k not in LOCATIONS.get(name, ())}
            if isinstance(value, Mapping) else value for name, value in sections.items()}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def lineage_params(code: Mapping[str, str], fingerprint: Mapping[str, str], split: Mapping[str, Any],
                   configuration: str) -> dict[str, str]:
    """The run's lineage params: ``code.*``, ``versions.*`` (:func:`library_versions`), ``data.fingerprint.*``
    (rows, time range and hash per table), ``split.*`` and ``config_hash`` (:func:`config_hash`)."""
    return {**{f"code.{k}": v for k, v in code.items()},
            **{f"versions.{k}": v for k, v in library_versions().items()},
            **{f"data.fingerprint.{k}": v for k, v in fingerprint.items()},
            **split_params(split), "config_hash": configuration}


def version_lineage(code: Mapping[str, str], fingerprint: Mapping[str, str], seed: int) -> dict[str, str]:
    """Registered-version tags: what a version was trained with (code, data hash, seed)."""
    return {**code, "data_hash": fingerprint.get("hash", UNKNOWN), "seed": str(seed)}


def _rows_and_range(fingerprint: Mapping[str, str], table: str) -> str | None:
    rows = fingerprint.get(f"{table}.rows")
    if rows is None:
        return None
    span = [v[:10] for k, v in fingerprint.items() if k.startswith(f"{table}.") and k.endswith(("_min", "_max"))]
    return f"{table} {int(rows):,}" + (f" ({span[0]} to {span[1]})" if len(span) == 2 else "")


def lineage_summary(code: Mapping[str, str], fingerprint: Mapping[str, str], seed: int, project: str) -> str:
    """One paragraph: the project, the data (rows and dates per table, hash), the code and the seed (the
    registered version's description)."""
    tables = [t for t in ("leads", "events", "outcomes", "flat") if f"{t}.rows" in fingerprint]
    data = "; ".join(filter(None, (_rows_and_range(fingerprint, t) for t in tables)))
    commit = code.get("git_commit", UNKNOWN)
    if commit != UNKNOWN:
        commit = commit[:12] + (" with uncommitted changes" if code.get("git_dirty") == "true" else "")
    return (f"project {project}; data: {data or 'no fingerprint'}, hash {fingerprint.get('hash', UNKNOWN)}; "
            f"code: leadscore {code.get('leadscore_version', UNKNOWN)}, git commit {commit}; seed {seed}")


def lineage_card(code: Mapping[str, str], fingerprint: Mapping[str, str], seed: int, project: str,
                 config_hash: str) -> str:
    """The model card's ``## Lineage`` section."""
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    return ("## Lineage\n"
            f"- {lineage_summary(code, fingerprint, seed, project)}\n"
            f"- configuration hash {config_hash} (every setting, defaults included, is a param of the run)\n"
            f"- libraries: {versions}\n")


__all__ = [
    "LIBRARIES",
    "code_version",
    "config_hash",
    "library_versions",
    "lineage_card",
    "lineage_params",
    "lineage_summary",
    "lineage_tags",
    "source_commit",
    "split_params",
    "version_lineage",
]
