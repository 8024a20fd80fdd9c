"""Replay history through the same scoring and rules, in event time."""
