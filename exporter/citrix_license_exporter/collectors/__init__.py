"""Collectors fetch data from one target and turn it into their metric families; each is one
unit (base.CollectorUnit), listed in registry.py (docs/collectors.md)."""
