"""Read a wg-quick file back, independently of the code that wrote it.

:func:`parse` reads like the most permissive WireGuard parser: any Unicode line break ends a
line (``str.splitlines``: LF, CR, VT, FF, FS, GS, RS, NEL, U+2028, U+2029), ``#`` starts a
comment, ``[Name]`` starts a section and ``Key = Value`` lines fill it (keys are
case-insensitive, as in ``wg`` and ``wg-quick``). :func:`wg_quick_strip` runs the real
``wg-quick strip`` (wireguard-tools) on the text.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Section:
    name: str
    keys: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Parsed:
    sections: list[Section]
    stray: list[str]  # lines that are neither a section, a key = value nor a comment

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sections]

    def peers(self) -> list[Section]:
        return [s for s in self.sections if s.name == "peer"]


def parse(text: str) -> Parsed:
    sections: list[Section] = []
    stray: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append(Section(line[1:-1].strip().lower()))
            continue
        key, sep, value = line.partition("=")
        if not sep or not sections:
            stray.append(raw)
            continue
        sections[-1].keys.setdefault(key.strip().lower(), []).append(value.strip())
    return Parsed(sections, stray)


def have_wg_quick() -> bool:
    return shutil.which("wg-quick") is not None


def wg_quick_strip(text: str) -> str:
    """``wg-quick strip`` of the text (what wg-quick hands to ``wg setconf``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tongdao0.conf"
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        done = subprocess.run(
            ["wg-quick", "strip", str(path)], capture_output=True, text=True, timeout=10
        )
    assert done.returncode == 0, done.stderr
    return done.stdout
