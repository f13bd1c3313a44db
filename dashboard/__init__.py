"""Streamlit dashboard (thin: every number comes from cascade_explorer.core)."""
