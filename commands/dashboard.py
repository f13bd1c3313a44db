"""`cascade-explorer dashboard`: start the Streamlit app as a subprocess (core never imports Streamlit)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import webbrowser
from pathlib import Path

from cascade_explorer.core.errors import UsageError
from cascade_explorer.dashboard import APP_PATH, BANK_ENV

from .common import port as port_number, say


def dashboard_command(*, port: int = 8501, address: str = "127.0.0.1") -> list[str]:
    """The command that serves the dashboard (also used by the browser tests)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.port", str(port),
        "--server.address", address,
        # Always headless: a non-headless first run asks for an e-mail address on stdin and
        # hangs a fresh machine; run_dashboard opens the browser itself instead.
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        # Uploads for the Live page: images only, so a small limit (MB) keeps the server safe.
        "--server.maxUploadSize", "25",
    ]


def add_parser(sub) -> None:
    p = sub.add_parser("dashboard", help="open the web dashboard")
    p.add_argument("--bank", help="bank to open first (default: the shipped default bank)")
    p.add_argument("--port", type=port_number, default=8501)
    p.add_argument("--address", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --address; the dashboard has NO authentication: anyone who can "
                        "reach the port can use it (see the README)")
    p.add_argument("--headless", action="store_true", help="do not open a browser window")


def run(args) -> int:
    from cascade_explorer.core.bank import Bank, is_bank

    env = dict(os.environ)
    if args.bank:
        bank = Path(args.bank).expanduser().resolve()
        if not is_bank(bank):
            raise UsageError(f"--bank {args.bank}: no manifest.json there; pass a bank folder "
                             "(build one with `cascade-explorer import` or `precompute`)")
        Bank.open(bank)   # a damaged bank fails here, with the file and the fix, not later in the browser
        env[BANK_ENV] = str(bank)
    _check_address(args.address, args.port)
    if not is_loopback(args.address) and not args.allow_remote:
        raise UsageError(f"--address {args.address}: not a loopback address. The dashboard has no "
                         "authentication: anyone who can reach this machine on port "
                         f"{args.port} could browse every bank found here and run the models on uploads. "
                         "Use 127.0.0.1 (and an SSH tunnel for remote use), or pass --allow-remote to serve it anyway")
    command = dashboard_command(port=args.port, address=args.address)
    url = f"http://{args.address}:{args.port}"
    say(f"Cascade Explorer on {url}  (Ctrl+C stops it)", err=True)
    if not is_loopback(args.address):
        say("warning: serving without authentication beyond this machine (--allow-remote)", err=True)
    # the server ends with this process even on `kill -9` (which runs no clean-up here): Linux's
    # parent-death signal; elsewhere only the SIGTERM / Ctrl+C path below stops it
    server = subprocess.Popen(command, env=env, preexec_fn=_end_with_parent(os.getpid()))
    # `kill`, a service manager or a test stopping this process must stop the server too, not orphan it
    # (SIGTERM would otherwise end Python without running the clean-up below)
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    if not args.headless:
        threading.Thread(target=_open_browser_when_up, args=(url, server), daemon=True).start()
    try:
        return server.wait()
    except KeyboardInterrupt:
        return stop_server(server)
    finally:
        signal.signal(signal.SIGTERM, previous)


def is_loopback(address: str) -> bool:
    """Whether every address `address` resolves to is a loopback one (127.0.0.0/8, ::1)."""
    import ipaddress
    import socket

    try:
        infos = socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def _end_with_parent(parent_pid: int):
    """preexec_fn for the server: ask Linux to SIGTERM it when its parent dies (PR_SET_PDEATHSIG),
    and exit at once if the parent already died before that took effect. None off Linux."""
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:   # the parent died between fork and prctl
            os._exit(1)

    return preexec


def _check_address(address: str, port: int) -> None:
    """Fail before starting Streamlit (whose own errors are tracebacks) when the address is not one
    of this machine's or the port is taken."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UsageError(f"--address {address}: not a host name or IP address this machine can resolve; "
                         "use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(sockaddr)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UsageError(f"--port {port}: already in use on {address} (another dashboard?); "
                                 "pass another --port") from None
            raise UsageError(f"--address {address}: cannot listen there ({error.strerror}); "
                             "use 127.0.0.1 or 0.0.0.0") from None


def stop_server(server: subprocess.Popen, timeout_s: float = 20.0) -> int:
    """Stop a dashboard server: SIGTERM, then SIGKILL if it has not exited within `timeout_s`; its exit status."""
    server.terminate()
    try:
        return server.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.wait()


def wait_until_serving(url: str, server: subprocess.Popen, timeout_s: float = 60.0) -> bool:
    """True once the Streamlit server at `url` answers its health check; False when it exits or
    `timeout_s` passes first (the benchmarks and the browser opener share this wait)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def _open_browser_when_up(url: str, server: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Open the user's browser once the server answers its health check (no-op without a browser)."""
    if wait_until_serving(url, server, timeout_s):
        webbrowser.open(url)
