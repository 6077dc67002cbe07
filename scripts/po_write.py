"""Add translations to one of the console's catalogues (a developer's tool, not shipped).

    .venv/bin/python scripts/po_write.py DOMAIN FILE.py

FILE.py defines ``ZH = {msgid: translation}``; the entries are merged into
``src/tongdao/web/locale/zh_CN/LC_MESSAGES/DOMAIN.po`` (created if new), sorted by msgid.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

LOCALE = Path(__file__).resolve().parent.parent / "src/tongdao/web/locale/zh_CN/LC_MESSAGES"


def main(domain: str, source: str) -> None:
    additions: dict[str, str] = runpy.run_path(source)["ZH"]
    path = LOCALE / f"{domain}.po"
    if path.exists():
        with path.open("rb") as handle:
            catalog = read_po(handle, locale="zh_CN", domain=domain)
    else:
        catalog = Catalog(
            locale="zh_CN",
            domain=domain,
            project="Tongdao",
            version="1",
            copyright_holder="Tongdao",
            msgid_bugs_address="-",
            last_translator="Tongdao",
            language_team="Tongdao",
        )
    catalog.fuzzy = False  # a header marked fuzzy would be left out of the translations
    for msgid, text in additions.items():
        catalog.add(msgid, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        write_po(handle, catalog, sort_output=True, width=100, omit_header=False)
    print(f"{path}: {len(catalog)} messages")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
