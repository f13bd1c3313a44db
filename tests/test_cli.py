"""The CLI's own contract: usage errors are one line on stderr with exit status 2."""

import subprocess
import sys

import pytest

from cascade_explorer.core import cli


def test_every_documented_subcommand_is_wired():
    parser = cli.build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    assert set(subcommands) == set(cli.HANDLERS)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["evaluate"], "--models"),
        (["evaluate", "--models", "a,b", "--criterion", "vibes"], "invalid choice"),
        (["evaluate", "--models", "a,b", "--thresholds", "0.5,high"], "comma-separated numbers"),
        (["pareto", "--max-stages", "7"], "invalid choice"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_dashboard_refuses_a_folder_without_manifest(tmp_path, capsys):
    assert cli.main(["dashboard", "--bank", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and str(tmp_path) in err


def test_console_script_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "cascade_explorer.core.cli", "--version"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.startswith("cascade-explorer ")
