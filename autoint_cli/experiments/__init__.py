"""Experiments beside the main pipeline: sparse-view CT with integral networks, and 1-D automatic integration."""
