"""Where a trained model came from: the code, the libraries, the data and the split of its run.

Read when a run is logged (never on import): the package version of leadscore, the git commit of the
checkout it runs from (when it runs from one), the versions of the libraries that shape the model, the
data fingerprint (:func:`features.fingerprint.data_fingerprint`) and the dates of the split. The MLflow
run records them as params and tags, the registered version as tags and a description, the model card in
its ``## Lineage`` section. A training set built by `leadscore features build` records the same (its
MLflow run's params and tags, its Parquet file's metadata: :func:`features_lineage`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from features.build import TrainingSet
    from leadscore.project import ProjectConfig

# the distributions whose version can change a model, its figures or how it loads
LIBRARIES = ("lightgbm", "numpy", "pandas", "scikit-learn", "scipy", "optuna", "pyarrow", "mlflow", "pydantic")
PACKAGE = "leadscore"
GIT_TIMEOUT_SECONDS = 5.0
UNKNOWN = "unknown"
MAX_PARAM = 6000  # characters of an MLflow param value


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


def lineage_record(code: Mapping[str, str], fingerprint: Mapping[str, str], seed: int, project: str,
                   config_hash: str) -> dict[str, Any]:
    """The lineage as one JSON-ready object (what a training set file's metadata holds): the project, the
    configuration hash, the seed, the code and library versions and the data fingerprint per table."""
    return {"project": project, "config_hash": config_hash, "seed": str(seed), "code": dict(code),
            "versions": library_versions(), "data_fingerprint": dict(fingerprint)}


def flatten_params(prefix: str, value: Any) -> dict[str, str]:
    """Nested dicts/lists -> ``{"a.b": "value"}`` strings (MLflow params)."""
    out: dict[str, str] = {}
    if isinstance(value, Mapping):
        for key, inner in value.items():
            out.update(flatten_params(f"{prefix}.{key}" if prefix else str(key), inner))
    else:
        text = json.dumps(value, default=str) if isinstance(value, list | tuple) else str(value)
        out[prefix] = text[:MAX_PARAM]
    return out


def data_section(project: ProjectConfig) -> dict:
    """The project's data config as run params: defaults included, a database password masked."""
    from features.urls import masked_url

    config = project.data.model_dump(mode="json")
    source = config.get("source") or {}
    if source.get("url"):
        source["url"] = masked_url(source["url"])
    return config


@dataclass
class FeaturesLineage:
    """What `features build` records of a training set: run params and tags as a training run's lineage
    (``data.fingerprint.*``, ``code.*``, ``versions.*``, ``config_hash``; ``leadscore.data_hash``,
    ``leadscore.git_commit``, ``leadscore.seed``, ...), and the same as one object for the file's metadata
    (:func:`lineage_record`)."""

    params: dict[str, str]
    tags: dict[str, str]
    record: dict[str, Any]


def features_sections(project: ProjectConfig) -> dict[str, Any]:
    """The configuration a training set is built from: the features and data sections (a database password
    masked) and the score columns set aside beside the features."""
    return {"features": project.features.model_dump(mode="json"), "data": data_section(project),
            "training": {"score_columns": list(project.training.score_columns)}}


def features_lineage(project: ProjectConfig, training_set: TrainingSet) -> FeaturesLineage:
    """The lineage of a built training set whose ``source_fingerprint`` is set (the data it was built of): the
    data fingerprint per table, the hash of :func:`features_sections` (which shape the set), the code version
    and the project's training seed, as params and tags named as a training run's."""
    sections = features_sections(project)
    code, fingerprint, seed = code_version(), training_set.source_fingerprint, project.training.seed
    configuration = config_hash(sections)
    params = {**flatten_params("", sections), **lineage_params(code, fingerprint, {}, configuration),
              "data.rows": str(len(training_set.frame))}
    return FeaturesLineage(params, {"leadscore.project": project.name, **lineage_tags(code, fingerprint, seed)},
                           lineage_record(code, fingerprint, seed, project.name, configuration))


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
    "FeaturesLineage",
    "code_version",
    "config_hash",
    "data_section",
    "features_lineage",
    "features_sections",
    "flatten_params",
    "library_versions",
    "lineage_card",
    "lineage_params",
    "lineage_record",
    "lineage_summary",
    "lineage_tags",
    "source_commit",
    "split_params",
    "version_lineage",
]
