"""Run the test provider: migrate its SQLite store, make a signing key, serve on loopback.

``python -m tests.support.oidc_idp.serve`` binds 127.0.0.1 on a free port, sets the issuer
from it, and prints ``ready <base URL>`` on stdout once it accepts connections. It stops on
SIGTERM, or when its parent process is gone. Settings come from the environment (see
``settings.py``). With ``--migrate-only`` it only migrates (the fixture does that once per
test session and copies the file: a fresh migration takes seconds, starting on a migrated
store about one).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.oidc_idp.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from oidc_provider.models import RSAKey

    from tests.support.oidc_idp.control import new_rsa_key

    call_command("migrate", verbosity=0, interactive=False)
    if "--migrate-only" in sys.argv[1:]:
        return
    if not RSAKey.objects.exists():
        new_rsa_key()

    server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    port = server.server_address[1]
    settings.SITE_URL = f"http://127.0.0.1:{port}"
    server.set_app(WSGIHandler())

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    parent = os.getppid()

    def orphaned() -> None:
        # Stop when the test run that started us is gone (killed without a SIGTERM to us).
        while os.getppid() == parent:
            time.sleep(1)
        server.shutdown()

    threading.Thread(target=orphaned, daemon=True).start()
    print(f"ready {settings.SITE_URL}", flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
