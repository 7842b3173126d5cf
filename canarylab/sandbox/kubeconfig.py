"""Kubeconfig files for the sandbox's identities, with the credentials inlined
so that a copied file keeps working."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, pki: Path, client_stem: str, context: str) -> Path:
    """Write a kubeconfig for ``server`` authenticating with ``pki/<client_stem>.crt``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": _b64(pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": f"{context}-{client_stem}",
                "user": {
                    "client-certificate-data": _b64(pki / f"{client_stem}.crt"),
                    "client-key-data": _b64(pki / f"{client_stem}.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": f"{context}-{client_stem}"},
            }
        ],
        "current-context": context,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path
