"""Collectors fetch data from one target. They never name metrics (see metrics.py)."""
