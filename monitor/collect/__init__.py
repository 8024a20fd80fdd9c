"""Collectors: poll feeds, normalise, dedup, tag entities, publish to riskwire.news.raw."""
