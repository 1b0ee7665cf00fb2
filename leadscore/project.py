"""The project file (``leadscore.yaml``): one YAML, loaded once at the edge into typed sections.

```yaml
name: acme
data: {...}        # features.contract.DataConfig (mode: crm) or FlatConfig (mode: flat)
features: {...}    # features.spec.FeatureConfig
training: {...}    # training.config.TrainingConfig
time_to_close: {...}  # training.survival_config.TimeToCloseConfig
forecast: {...}    # training.forecast_config.ForecastConfig
```
Relative paths inside ``data`` (and ``training.points_rules``) resolve against the directory of
the project file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from features.contract import (
    DataConfig,
    FlatConfig,
    SourceConfig,
    config_error_text,
    parse_data_config,
    yaml_error_text,
)
from features.spec import FeatureConfig
from training.config import TrainingConfig
from training.forecast_config import ForecastConfig
from training.survival_config import TimeToCloseConfig

DEMO_DATABASE = "crm.db"


class ProjectConfig(BaseModel):
    """Every section of a leadscore project, validated."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str = "leadscore"
    data: DataConfig | FlatConfig
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    time_to_close: TimeToCloseConfig = Field(default_factory=TimeToCloseConfig)
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)


class ProjectConfigError(ValueError):
    """The project file is missing, unreadable or invalid (the message names the section)."""


def parse_project(document: dict[str, Any], base_dir: Path | str) -> ProjectConfig:
    """Validate a parsed project document; relative data paths resolve against ``base_dir``."""
    if document is None:
        raise ProjectConfigError("project file: empty; it needs at least a 'data:' section")
    if not isinstance(document, dict):
        raise ProjectConfigError(f"project file: must be a mapping of sections (data:, features:, ...), "
                                 f"got a {type(document).__name__}")
    unknown = set(document) - set(ProjectConfig.model_fields)
    if unknown:  # a misspelt 'data:' too is named, not only found missing
        raise ProjectConfigError(
            f"project file: unknown section(s) {sorted(unknown, key=str)}; expected {sorted(ProjectConfig.model_fields)}"
        )
    if "data" not in document:
        raise ProjectConfigError("project file: a top-level 'data:' section is required")
    name = document.get("name", "leadscore")
    if not isinstance(name, str) or not name.strip():
        raise ProjectConfigError(f"project file: name: must be a non-empty text, got {name!r}")
    sections: dict[str, Any] = {"name": name}
    key = "data"
    try:
        sections["data"] = parse_data_config(document["data"], base_dir)
        for key, model in (("features", FeatureConfig), ("training", TrainingConfig),
                           ("time_to_close", TimeToCloseConfig), ("forecast", ForecastConfig)):
            if document.get(key) is not None:
                sections[key] = model.model_validate(document[key], context={"base_dir": Path(base_dir)})
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ProjectConfigError(f"project file: {config_error_text(key, exc)}") from exc
    return ProjectConfig(**sections)


def load_project(path: Path | str) -> ProjectConfig:
    """Read ``leadscore.yaml`` (or any project file). A bare data config (a file holding the ``data:``
    section's fields, such as ``configs/xeducation.yaml``) is a project of that data with every other
    section at its default, named after the file."""
    path = Path(path)
    if path.is_dir():
        raise ProjectConfigError(f"project file {path} is a folder: give the file in it (e.g. {path / 'leadscore.yaml'})")
    if not path.is_file():
        raise ProjectConfigError(f"project file not found: {path}")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:  # e.g. saved as Latin-1 with an accented column name
        raise ProjectConfigError(f"project file {path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                 "save it as UTF-8") from exc
    except yaml.YAMLError as exc:
        raise ProjectConfigError(f"project file {path}: not valid YAML: {yaml_error_text(exc)}") from exc
    if isinstance(document, dict) and "data" not in document and ("source" in document or "mode" in document):
        try:
            data = parse_data_config(document, path.resolve().parent)
        except ValueError as exc:
            raise ProjectConfigError(f"{path}: {config_error_text('', exc)}") from exc
        return ProjectConfig(name=path.stem, data=data)
    try:
        return parse_project(document, path.resolve().parent)
    except ProjectConfigError as exc:  # name the file
        raise ProjectConfigError(str(exc).replace("project file", f"project file {path}", 1)) from exc


def sqlite_project(directory: Path | str, name: str = "demo") -> ProjectConfig:
    """The embedded default: the three canonical tables in ``<directory>/crm.db`` (SQLite)."""
    url = f"sqlite:///{(Path(directory) / DEMO_DATABASE).resolve()}"
    return ProjectConfig(name=name, data=DataConfig(source=SourceConfig(kind="sql", url=url)))


def project_yaml(config: ProjectConfig) -> str:
    """The project as YAML text (what `leadscore demo` writes next to its database)."""
    document = config.model_dump(mode="json", exclude_defaults=True)
    document.setdefault("data", {})["mode"] = config.data.mode
    return yaml.safe_dump(document, sort_keys=False)
