"""Build ``src/tongdao/auth/common-passwords.txt.gz``, the blocklist of common and breached
passwords that :mod:`tongdao.auth.passwords` checks (NIST SP 800-63B-4, 3.1.1.2).

Sources, both public and taken from the wheels PyPI serves (no other download is needed):

* Django's ``django/contrib/auth/common-passwords.txt.gz`` (BSD-3-Clause): 20,000 common
  passwords, unhexed, lowercased and deduplicated, by Royce Williams
  (gist.github.com/roycewilliams/226886fd01572964e1431ac8afc999ce);
* zxcvbn's ``zxcvbn/frequency_lists.py`` list ``passwords`` (MIT): the 30,000 most frequent
  passwords of Mark Burnett's 10-million-password corpus, the corpus SecLists ships as
  ``Passwords/Common-Credentials/xato-net-10-million-passwords*.txt``.

The union is lowercased, deduplicated, sorted by length then text, one per line, gzipped
with a fixed mtime so the output is reproducible:

    pip download --no-deps -d /tmp/pw django==5.2.19 zxcvbn==4.5.0
    python scripts/build_password_blocklist.py /tmp/pw/django-*.whl /tmp/pw/zxcvbn-*.whl
"""

from __future__ import annotations

import gzip
import io
import re
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src/tongdao/auth/common-passwords.txt.gz"


def django_list(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read("django/contrib/auth/common-passwords.txt.gz"))
    return {line.strip() for line in raw.decode().splitlines() if line.strip()}


def zxcvbn_list(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        source = zf.read("zxcvbn/frequency_lists.py").decode()
    match = re.search(r'"passwords":\s*"([^"]*)"', source)
    if match is None:
        raise SystemExit("no 'passwords' list in zxcvbn/frequency_lists.py")
    return {word for word in match.group(1).split(",") if word}


def main(django_wheel: str, zxcvbn_wheel: str) -> None:
    words = {w.lower() for w in django_list(Path(django_wheel)) | zxcvbn_list(Path(zxcvbn_wheel))}
    words = {w for w in words if "\n" not in w and "\r" not in w}
    text = "".join(w + "\n" for w in sorted(words, key=lambda w: (len(w), w)))
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode())
    OUT.write_bytes(buf.getvalue())
    print(f"{OUT}: {len(words)} passwords, {len(buf.getvalue())} bytes")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
