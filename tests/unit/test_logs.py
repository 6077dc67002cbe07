"""Daemon logs as JSON lines."""

from __future__ import annotations

import json
import logging

from tongdao.logs import JsonFormatter


def test_json_lines_carry_extra_fields() -> None:
    record = logging.LogRecord(
        "tongdao.agent", logging.WARNING, __file__, 1, "applied version %d", (7,), None
    )
    record.tenant = "a"
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning"
    assert line["logger"] == "tongdao.agent"
    assert line["message"] == "applied version 7"
    assert line["tenant"] == "a"
    assert line["time"].endswith("Z")
