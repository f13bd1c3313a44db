"""The CLI's own contract: usage errors are one line on stderr with exit status 2."""

import subprocess
import sys

import pytest

from cascade_explorer.commands import cli


def test_every_documented_subcommand_is_wired():
    parser = cli.build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    assert set(subcommands) == set(cli.COMMANDS)
    for command in cli.COMMANDS:
        assert callable(cli._module(command).run)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["evaluate"], "--models"),
        (["evaluate", "--models", "a,b", "--criterion", "vibes"], "invalid choice"),
        (["evaluate", "--models", "a,b", "--thresholds", "0.5,high"], "comma-separated numbers"),
        (["pareto", "--max-stages", "7"], "invalid choice"),
        (["nonsense"], "invalid choice"),
        (["evaluate", "--models", "a,b", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
        (["dashboard", "--port", "99999"], "argument --port: expected a port number from 1 to 65535"),
        (["dashboard", "--port", "-1"], "argument --port"),
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


@pytest.mark.parametrize("argv", [
    ["evaluate", "--models", "a,b", "--thresholds", "0.5", "--bank"],
    ["predict", "--config"],
])
@pytest.mark.parametrize("make_path", [lambda tmp: tmp / "a-file" / "sub", lambda tmp: tmp / ("x" * 300)],
                         ids=["file-as-folder", "name-too-long"])
def test_system_refusing_a_path_is_one_line_naming_it(tmp_path, capsys, argv, make_path):
    (tmp_path / "a-file").write_text("not a folder")
    path = make_path(tmp_path)
    full = argv + [str(path)] + (["image.jpg"] if argv[0] == "predict" else [])
    code = cli.main(full)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(path) in err, err


def test_evaluate_prints_minus_inf_thresholds(capsys):
    """-inf (every image exits at stage 1) and inf (none does) must not print alike."""
    for value, exits in (("-inf", "100.0 %"), ("inf", "0.0 %")):
        assert cli.main(["evaluate", "--models", "mobilenet_v1_025_128,efficientnet_lite2",
                         f"--thresholds={value}", "--on", "all"]) == 0
        out = capsys.readouterr().out
        assert f"thresholds {value}," in out
        assert f"mobilenet_v1_025_128 {exits}" in out


def test_dashboard_checks_address_port_and_bank_before_starting(tmp_path, capsys):
    import socket

    from cascade_explorer.core.bank import DEFAULT_BANK_PATH

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["dashboard", "--port", str(port), "--headless"]) == 2
        assert f"--port {port}: already in use" in capsys.readouterr().err
    assert cli.main(["dashboard", "--address", "999.1.1.1", "--headless"]) == 2
    assert "--address 999.1.1.1: not a host name or IP address" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    assert cli.main(["dashboard", "--bank", str(broken), "--headless"]) == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and "malformed JSON" in err and len(err.strip().splitlines()) == 1
    assert DEFAULT_BANK_PATH   # the default bank itself is not re-checked here: the launch test serves it


def test_console_script_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "cascade_explorer.commands.cli", "--version"],
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
    server = subprocess.Popen([sys.executable, "-m", "cascade_explorer.commands.cli", "dashboard",
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
        # stopping the command (SIGTERM) stops the Streamlit server it started: nothing answers there
        server.terminate()
        server.wait(timeout=30)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=20)


def test_dashboard_refuses_a_non_loopback_address_without_allow_remote(capsys):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert cli.main(["dashboard", "--address", "0.0.0.0", "--port", str(port), "--headless"]) == 2
    err = capsys.readouterr().err
    assert "--address 0.0.0.0: not a loopback address" in err and "--allow-remote" in err
    from cascade_explorer.commands.dashboard import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("no.such.host.invalid")


def test_dashboard_server_ends_when_the_command_is_killed(tmp_path):
    """`kill -9` of `cascade-explorer dashboard` runs none of its clean-up: the server must still end."""
    import os
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, HOME=str(tmp_path), BROWSER="true")
    command = subprocess.Popen([sys.executable, "-m", "cascade_explorer.commands.cli", "dashboard", "--headless",
                                "--port", str(port)], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                assert command.poll() is None and time.monotonic() < deadline, "dashboard did not come up"
                time.sleep(0.5)
        command.send_signal(signal.SIGKILL)
        command.wait(timeout=10)
        deadline = time.monotonic() + 30
        while True:   # the orphaned server must stop listening
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            except OSError:
                break
            assert time.monotonic() < deadline, "the Streamlit server still listens after kill -9 of its parent"
            time.sleep(0.5)
    finally:
        try:   # a server left by old code is in the command's session: end it here
            os.killpg(command.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
