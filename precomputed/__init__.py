"""Shipped banks of precomputed logits; see README.md in this folder for the format."""
