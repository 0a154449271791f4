"""The CLI's failure modes: bad arguments and missing tools are one clear line, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from webtraffic.cli import main


def test_bad_subcommand_is_one_line(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["stack", "sideways"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "invalid choice: 'sideways'" in err


def test_bad_setting_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("WEBTRAFFIC_KAFKA_PORT", "not-a-port")
    assert main(["stack", "status"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "webtraffic: error: WEBTRAFFIC_KAFKA_PORT must be an integer, got 'not-a-port'"


def test_missing_java_is_one_line(tmp_path, settings):
    # Only the venv's python on PATH and no JAVA_HOME: the broker cannot start.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {
        **{k: v for k, v in os.environ.items() if k != "JAVA_HOME"},
        "PATH": str(bin_dir),
        "WEBTRAFFIC_STATE_DIR": str(tmp_path / "state"),
        "WEBTRAFFIC_JARS_DIR": str(settings.jars_dir),
    }
    result = subprocess.run(
        [sys.executable, "-m", "webtraffic.cli", "stack", "up"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("webtraffic: error: Java not found")
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_maven_stops_setup_with_one_line(tmp_path, repo_root: Path):
    # PATH with python3 and java but no mvn: `make preflight` names what is missing.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(shutil.which("python3") or sys.executable)
    java = shutil.which("java")
    assert java
    (bin_dir / "java").symlink_to(java)
    make = shutil.which("make")
    assert make
    result = subprocess.run(
        [make, "-s", "preflight"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "error: Maven not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_tables_on_an_empty_catalog(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WEBTRAFFIC_STATE_DIR", str(tmp_path))
    assert main(["tables", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
