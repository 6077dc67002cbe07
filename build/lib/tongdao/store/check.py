"""``python -m tongdao.store.check``: fail when models and migrations disagree.

Migrates a scratch SQLite database to head and compares it with the models, as
``alembic check`` does; the test suite does the same on PostgreSQL.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tongdao.store import migrate


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'check.sqlite3'}"
        migrate.upgrade(url)
        diffs = migrate.differences(url)
    if diffs:
        print("models and migrations disagree; write a migration:", file=sys.stderr)
        for diff in diffs:
            print(f"  {diff}", file=sys.stderr)
        return 1
    print(f"models and migrations agree at {migrate.head_revision()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
