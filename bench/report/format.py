"""The one number formatter of tables and reports: "-" for a missing value (None or NaN)."""

from __future__ import annotations


def fmt(value, digits: int = 2, scale: float = 1.0, unit: str = "") -> str:
    return "-" if value is None or value != value else f"{value * scale:.{digits}f}{unit}"
