"""autoint: train and render neural volume scenes with AutoInt (automatic integration)."""

__version__ = "0.1.0"
