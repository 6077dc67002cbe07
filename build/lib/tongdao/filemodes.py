"""Files that hold personal data are their owner's only, whatever the process umask.

The data directory is made 0700; the SQLite store is created 0600 before SQLite opens it (SQLite
gives its ``-wal``, ``-shm`` and ``-journal`` files the mode of the store file), and the store,
those siblings and the generated ``data.key`` are tightened to 0600 when an earlier version (or
a umask of 022) left them looser.

A data directory that exists with group or other permissions is tightened to 0700 when it holds
nothing but Tongdao's own files (an earlier version's data directory); a directory that also
holds other files (``--data-dir /var/lib`` by mistake, a shared directory) is left as it is,
because changing it could break whoever else uses it, and a warning says so. The files
Tongdao keeps in it are 0600 either way.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("tongdao.store")

DIR_MODE = 0o700
FILE_MODE = 0o600
KEY_FILE = "data.key"
STORE_FILE = "tongdao.sqlite3"
SQLITE_SIBLINGS = ("-wal", "-shm", "-journal")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def store_names(store: str) -> tuple[str, ...]:
    """The SQLite store file's name and those of the files SQLite keeps beside it."""
    return (store, *(store + suffix for suffix in SQLITE_SIBLINGS))


def _ours(names: Iterable[str], own: set[str]) -> bool:
    return all(name in own for name in names)


def private_dir(path: Path, own: Iterable[str] = ()) -> None:
    """Make ``path`` (and missing parents) with the directory itself 0700, or tighten an
    existing one that holds only Tongdao's files (``own``, the default store's and the data
    key's names); warn about one it shares with other files."""
    if not path.exists():
        path.mkdir(parents=True, mode=DIR_MODE, exist_ok=True)
        os.chmod(path, DIR_MODE)  # mkdir's mode went through the umask
        return
    current = _mode(path)
    if not current & 0o077:
        return
    names = {KEY_FILE, *store_names(STORE_FILE), *own}
    if _ours(os.listdir(path), names):
        try:
            os.chmod(path, DIR_MODE)
        except OSError as exc:
            log.warning(
                "the data directory %s is %s and cannot be made 0700 (%s): anyone on this "
                "host with access to it can list it",
                path,
                oct(current),
                exc,
            )
            return
        log.warning(
            "tightened the data directory %s from %s to %s: it holds personal data",
            path,
            oct(current),
            oct(DIR_MODE),
        )
        return
    log.warning(
        "the data directory %s is %s and holds files that are not Tongdao's, so its mode is "
        "left as it is; give Tongdao a directory of its own (mode 0700). The store and key "
        "files in it are %s",
        path,
        oct(current),
        oct(FILE_MODE),
    )


def tighten_file(path: Path) -> None:
    """An existing file open to group or others loses those bits (0644 becomes 0600; an owner
    who made it 0400 keeps 0400). A missing file is fine."""
    try:
        current = _mode(path)
    except FileNotFoundError:
        return
    if current & 0o077:
        try:
            os.chmod(path, current & 0o700)
        except OSError as exc:
            log.warning("%s is %s and cannot be made 0600: %s", path, oct(current), exc)


def private_store(store: Path) -> None:
    """The SQLite store's directory 0700 and the store 0600, created empty (which SQLite
    takes as a new database) when missing, so that SQLite's own files inherit 0600."""
    private_dir(store.parent, store_names(store.name))
    try:
        fd = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        pass  # an existing store (or another process made it just now): tightened below
    else:
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask took away
        finally:
            os.close(fd)
    for name in store_names(store.name):
        tighten_file(store.parent / name)
