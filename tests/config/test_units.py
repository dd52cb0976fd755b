"""Durations and sizes as config values (router.config.units)."""

import pytest

from router.config.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize(("text", "seconds"), [
    ("2s", 2.0),
    ("150ms", 0.15),
    ("250us", 0.00025),
    ("250µs", 0.00025),
    ("5m", 300.0),
    ("1h", 3600.0),
    ("1m30s", 90.0),
    ("1h 2m 3s", 3723.0),
    ("1.5s", 1.5),
    ("  10s ", 10.0),
    (0, 0.0),
    (3, 3.0),
    (0.25, 0.25),
])
def test_parse_duration_accepts(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "problem"), [
    ("2", "unit"),          # a bare string number is ambiguous (seconds? ms?)
    ("2x", "unit"),
    ("s", "unit"),
    ("-1s", "cannot be negative"),
    ("1s-", "unit"),
    ("", "a duration is"),
    ("   ", "a duration is"),
    (-1, "negative"),
    (True, "a duration is"),
    (None, "a duration is"),
    ([1], "a duration is"),
])
def test_parse_duration_refuses(value, problem):
    with pytest.raises(ValueError, match=problem):
        parse_duration(value)


@pytest.mark.parametrize(("text", "size"), [
    (0, 0),
    (65536, 65536),
    ("512", 512),
    ("512B", 512),
    ("64KiB", 65536),
    ("64kib", 65536),
    ("100MiB", 100 * 1024**2),
    ("1GiB", 1024**3),
    ("1TiB", 1024**4),
    ("1KB", 1000),
    ("2MB", 2_000_000),
    ("1GB", 10**9),
    ("1.5KiB", 1536),
    (" 8 KiB ", 8192),
])
def test_parse_size_accepts(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(("value", "problem"), [
    ("10QB", "invalid size"),
    ("KiB", "invalid size"),
    ("-1KiB", "invalid size"),
    ("", "invalid size"),
    (-1, "negative"),
    (1.5, "invalid size"),
    (True, "a size is"),
    (None, "invalid size"),
])
def test_parse_size_refuses(value, problem):
    with pytest.raises(ValueError, match=problem):
        parse_size(value)


@pytest.mark.parametrize(("seconds", "text"), [(2.0, "2s"), (0.15, "150ms"), (0, "0s"), (90, "90s")])
def test_format_duration_reads_back(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
