"""`cascade-explorer dashboard`: start the Streamlit app as a subprocess (core never imports Streamlit)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .errors import UsageError

APP_PATH = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
# Bank chosen on the command line; the app reads it on start-up.
BANK_ENV = "CASCADE_EXPLORER_BANK"


def dashboard_command(*, port: int = 8501, address: str = "127.0.0.1", headless: bool = False) -> list[str]:
    """The command that serves the dashboard (also used by the browser tests)."""
    app = APP_PATH
    if not app.is_file():  # installed non-editably: dashboard/ sits beside core/ in the package
        from .. import dashboard

        app = Path(dashboard.__file__).resolve().parent / "app.py"
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.port", str(port),
        "--server.address", address,
        "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false",
        # Uploads for the Live page: images only, so a small limit (MB) keeps the server safe.
        "--server.maxUploadSize", "25",
    ]


def run_dashboard(args) -> int:
    env = dict(os.environ)
    if args.bank:
        bank = Path(args.bank).expanduser().resolve()
        if not (bank / "manifest.json").is_file():
            raise UsageError(f"--bank {args.bank}: no manifest.json there; pass a bank folder "
                             "(build one with `cascade-explorer import` or `precompute`)")
        env[BANK_ENV] = str(bank)
    command = dashboard_command(port=args.port, address=args.address, headless=args.headless)
    print(f"Cascade Explorer on http://{args.address}:{args.port}  (Ctrl+C stops it)", file=sys.stderr)
    return subprocess.call(command, env=env)
