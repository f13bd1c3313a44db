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


@pytest.mark.parametrize("value, expected", [("-inf", [float("-inf")]), ("-0.5,inf", [-0.5, float("inf")])])
def test_thresholds_may_start_with_a_minus(value, expected):
    args = cli.build_parser().parse_args(cli._join_negative_values(
        ["evaluate", "--models", "a,b", "--thresholds", value]))
    assert args.thresholds == expected


def test_dashboard_refuses_a_folder_without_manifest(tmp_path, capsys):
    assert cli.main(["dashboard", "--bank", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and str(tmp_path) in err


def test_console_script_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "cascade_explorer.core.cli", "--version"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.startswith("cascade-explorer ")


def test_dashboard_command_serves_the_default_bank_without_prompting(tmp_path):
    """A fresh machine: no ~/.streamlit credentials, stdin closed; the server must come up."""
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # No Streamlit credentials file (HOME is empty), and "open the browser" runs `true`.
    env = dict(__import__("os").environ, HOME=str(tmp_path), BROWSER="true")
    server = subprocess.Popen([sys.executable, "-m", "cascade_explorer.core.cli", "dashboard",
                               "--port", str(port)],
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode(errors="replace")
                assert time.monotonic() < deadline, "dashboard did not answer within 60 s"
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=20)
