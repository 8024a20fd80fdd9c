"""The `collect:` section: validation with key paths, secrets masked, feeds files."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.collect.config import resolve_feeds
from monitor.config import load_config, masked_dump
from monitor.errors import ConfigError


def test_bad_feed_keys_are_reported_with_their_path(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "collect:\n"
        "  max_body_mb: -1\n"
        "  feeds:\n"
        "    - {id: ok, url: 'https://a.example/rss'}\n"
        "    - {id: bad, url: 'ftp://b.example/rss', interval_s: 0}\n"
        "    - {id: nopath, kind: file}\n"
        "    - {id: typo, url: 'https://c.example', intervall_s: 5}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env={})
    text = str(err.value)
    assert "collect.max_body_mb" in text
    assert "collect.feeds.1.interval_s" in text
    assert "collect.feeds.2" in text and "needs a `path`" in text
    assert "collect.feeds.3.intervall_s: unknown key" in text


def test_duplicate_feed_ids_are_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "collect:\n  feeds:\n    - {id: x, url: 'https://a.example'}\n"
        "    - {id: x, url: 'https://b.example'}\n"
    )
    with pytest.raises(ConfigError, match="listed twice"):
        load_config(cfg, env={})


def test_header_secrets_come_from_the_environment_and_print_masked(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "collect:\n  feeds:\n    - id: wire\n      url: https://w.example/rss\n"
        "      headers: {Authorization: 'Bearer ${WIRE_TOKEN}'}\n"
    )
    config = load_config(cfg, env={"WIRE_TOKEN": "s3cr3t"})
    (feed,) = config.collect.feeds
    assert feed.headers["Authorization"].get_secret_value() == "Bearer s3cr3t"
    assert "s3cr3t" not in repr(config) and "s3cr3t" not in str(masked_dump(config))


def test_feeds_file_is_merged_and_its_errors_name_file_and_path(tmp_path: Path) -> None:
    more = tmp_path / "feeds.yaml"
    more.write_text("feeds:\n  - {id: extra, url: 'https://x.example/rss', tags: [x]}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"collect:\n  feeds_file: {more}\n  feeds:\n    - {{id: inline, url: 'https://i.example'}}\n"
    )
    config = load_config(cfg, env={})
    assert [f.id for f in resolve_feeds(config.collect)] == ["inline", "extra"]
    more.write_text("- {id: extra, url: 'nope'}\n")
    with pytest.raises(ConfigError) as err:
        resolve_feeds(config.collect)
    assert f"{more}: feeds.0" in str(err.value)
