"""The fmriflow command: Snakemake's arguments, the --configfile files read first."""

import subprocess
from pathlib import Path

import pytest

from fmriflow import cli

REPO = Path(__file__).resolve().parents[1]
FMRIFLOW = REPO / ".venv" / "bin" / "fmriflow"


@pytest.mark.parametrize(
    "arguments, paths",
    [
        (
            ["--cores", "2", "--configfile", "a.yaml", "b.yaml", "-n", "target"],
            ["a.yaml", "b.yaml"],
        ),
        (["--configfile=c.yaml", "all"], ["c.yaml"]),
        (["--configfiles", "d.yaml", "--cores", "1", "e.yaml"], ["d.yaml"]),
        (["--cores", "2"], []),
    ],
)
def test_the_configfiles_are_those_snakemake_would_read(arguments, paths):
    assert cli.configfiles(arguments) == paths


def test_a_mistyped_config_path_is_one_line_naming_it(tmp_path, capsys):
    missing = tmp_path / "my-studdy.yaml"
    assert cli.main(["--cores", "1", "--configfile", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"fmriflow: Config file {missing}: not found. Check the path")
    assert "config.yaml" in err[0] and "haxby.yaml" in err[0]


def test_a_yaml_mistake_names_the_file_line_and_column(tmp_path, capsys):
    config = tmp_path / "study.yaml"
    config.write_text("datasets:\n  lab:\n    source: local\n    local: {subjects: [01, 02}\n")
    assert cli.main(["--configfile", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"Config file {config}, line 4, column " in err[0]
    assert "not valid YAML" in err[0] and "Traceback" not in err[0]


def test_a_good_config_goes_on_to_snakemake(tmp_path):
    result = subprocess.run(
        [
            str(FMRIFLOW),
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(tmp_path),
            "--configfile",
            str(REPO / "tests" / "data" / "tiny.yaml"),
            "-n",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "This was a dry-run" in result.stdout + result.stderr
    assert "simulate_subject" in result.stdout
