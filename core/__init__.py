"""Cascade Explorer library: banks of precomputed logits, the cascade engine, search and protocol.

No Streamlit imports here: the dashboard is a thin layer over this package.
"""

__version__ = "0.1.0"
