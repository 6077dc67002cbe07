"""The README's quick start as the tests read it: the shell blocks marked with
``<!-- quickstart: server -->`` (terminal 1, ``make run``) and ``<!-- quickstart -->``
(terminal 2, in order), and the prose of its section."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "## Quick start: a working tunnel on one machine"
BLOCK = re.compile(r"<!-- quickstart(?P<server>: server)? -->\n```sh\n(?P<body>.*?)\n```\n", re.S)
# The one line a test changes: the port (and nothing else) so that it cannot collide.
SETTINGS_LINE = "export TONGDAO_PORT=8080 TONGDAO_DATA_DIR=data"


@dataclass(frozen=True)
class QuickStart:
    section: str  # the section's text, prose and blocks
    server: str  # terminal 1
    steps: list[str]  # terminal 2, in order


def quick_start(text: str | None = None) -> QuickStart:
    text = README.read_text(encoding="utf-8") if text is None else text
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    section = text[start:end]
    blocks = list(BLOCK.finditer(section))
    markers = section.count("<!-- quickstart")
    assert len(blocks) == markers, f"{markers} quickstart markers but {len(blocks)} sh blocks"
    servers = [m["body"] for m in blocks if m["server"]]
    assert len(servers) == 1 and blocks[0]["server"], "one server block, first"
    steps = [m["body"] for m in blocks if not m["server"]]
    return QuickStart(section, servers[0], steps)


def on_port(script: str, port: int) -> str:
    """``script`` with the settings line's port changed (the line must be there, once)."""
    assert script.count(SETTINGS_LINE) == 1, f"expected {SETTINGS_LINE!r} once in:\n{script}"
    return script.replace(SETTINGS_LINE, SETTINGS_LINE.replace("8080", str(port)))
