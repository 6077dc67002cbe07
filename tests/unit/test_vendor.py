"""The vendored front-end files are the ones the vendor README lists, byte for byte."""

from __future__ import annotations

import hashlib
import re
from importlib import resources

VENDOR = resources.files("tongdao.web") / "static" / "vendor"
ROW = re.compile(r"→ `(?P<path>[^`]+)` \| (?P<licence>[^|]+) \| `(?P<sha>[0-9a-f]{64})` \|$")


def listed() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in (VENDOR / "README.md").read_text(encoding="utf-8").splitlines():
        match = ROW.search(line)
        if match:
            rows[match["path"]] = match["sha"]
    return rows


def test_every_vendored_file_matches_its_listed_sha256() -> None:
    rows = listed()
    assert len(rows) == 6
    for path, sha in rows.items():
        entry = VENDOR.joinpath(*path.split("/"))
        assert hashlib.sha256(entry.read_bytes()).hexdigest() == sha, path


def test_every_served_vendor_file_is_listed_and_every_library_has_its_licence() -> None:
    rows = listed()
    served = (".js", ".mjs", ".css", ".png", ".svg", ".woff2")
    for directory in VENDOR.iterdir():
        if not directory.is_dir():
            continue
        names = {entry.name for entry in directory.iterdir()}
        assert names & {"LICENSE", "LICENSE.md"}, f"{directory.name} has no licence file"
        for name in names:
            if name.endswith(served):
                assert f"{directory.name}/{name}" in rows, f"{directory.name}/{name} unlisted"
