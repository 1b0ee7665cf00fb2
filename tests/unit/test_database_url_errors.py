"""A `--db` that is no SQLAlchemy URL (a bare file name, as `synth --out` also refuses) is refused in one line
that shows the URL to write, as `synth --out` and `source.url` in a project file do."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.readers import DataSourceError, check_sqlite_file
from leadscore.cli import app


def test_a_bare_file_name_as_database_url_shows_the_url_to_write() -> None:
    with pytest.raises(DataSourceError, match=r"database URL 'crm\.db': not a SQLAlchemy URL \(e\.g\. sqlite:///crm\.db"):
        check_sqlite_file("crm.db")


def test_rescore_with_a_bare_file_name_as_db_says_which_url_to_give(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """It said "Could not parse SQLAlchemy URL from given URL string" (SQLAlchemy's words) and no example."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "crm.db").write_bytes(b"")
    result = CliRunner().invoke(app, ["rescore", "--db", "crm.db"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "error: database URL 'crm.db': not a SQLAlchemy URL (e.g. sqlite:///crm.db" in result.stderr, result.stderr
    assert not list(tmp_path.glob("*.db-journal")) and sorted(p.name for p in tmp_path.iterdir()) == ["crm.db"]
