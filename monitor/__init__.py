"""Riskwire: real-time financial news sentiment and risk monitoring."""

__version__ = "0.1.0"
