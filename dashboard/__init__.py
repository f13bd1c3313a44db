"""The Streamlit dashboard: a thin layer over `cascade_explorer.core` (started by `cascade-explorer dashboard`)."""

from pathlib import Path

APP_PATH = Path(__file__).resolve().parent / "app.py"
# The bank chosen on the command line (`cascade-explorer dashboard --bank`); the app reads it on start-up.
BANK_ENV = "CASCADE_EXPLORER_BANK"
