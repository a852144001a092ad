"""How the CLI reaches a server: address, bearer token and TLS options shared by score, scorers and health."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

#: The server's default `auth_token_env`: a token there is sent when no --token/--token-file is given.
TOKEN_ENV = "REWARDSVC_AUTH_TOKEN"


def add_connection_args(p: argparse.ArgumentParser, address_help: str) -> None:
    p.add_argument("--address", help=address_help)
    p.add_argument("--token-file", help=f"file holding the bearer token the server requires (default: ${TOKEN_ENV})")
    p.add_argument("--token", help=f"the bearer token itself (visible in `ps`: prefer --token-file or ${TOKEN_ENV})")
    p.add_argument("--tls-ca", help="PEM CA certificate of the server (TLS instead of plaintext)")
    p.add_argument("--tls-cert", help="PEM client certificate, for mutual TLS (with --tls-key)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")


def token_of(args: argparse.Namespace) -> str | None:
    """--token, else --token-file, else $REWARDSVC_AUTH_TOKEN; None = send no token."""
    if args.token and args.token_file:
        raise ValueError("give --token or --token-file, not both")
    if args.token:
        return args.token.strip() or None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise OSError(f"cannot read --token-file {args.token_file}: {exc.strerror or exc}") from None
        if not token:
            raise ValueError(f"--token-file {args.token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or None


def client_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """RewardClient/AsyncRewardClient keyword arguments for the token and TLS options."""
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("mutual TLS needs both --tls-cert and --tls-key")
    for flag, path in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path and not Path(path).is_file():
            raise ValueError(f"{flag} {path}: no such file")
    return {"token": token_of(args), "tls_ca_file": args.tls_ca, "tls_cert_file": args.tls_cert,
            "tls_key_file": args.tls_key}
