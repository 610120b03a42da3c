"""Harvest hourly and daily contact metrics of classified listings into PostgreSQL."""

__version__ = "0.1.0"
