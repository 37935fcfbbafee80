"""Throw-away TLS material for brokers in tests, generated with ``trustme``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["TlsFiles", "make_tls_files"]


@dataclass(frozen=True)
class TlsFiles:
    """Paths of PEM files for a TLS test broker.

    Attributes:
        ca_file: CA certificate that signed ``server_cert``; clients trust this one.
        server_cert: Server certificate (leaf first, then chain).
        server_key: Unencrypted private key of ``server_cert``.
        other_ca_file: An unrelated CA certificate, for "client trusts the wrong CA" tests.
    """

    ca_file: Path
    server_cert: Path
    server_key: Path
    other_ca_file: Path


def make_tls_files(
    directory: Path,
    *,
    hostnames: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1",),
    expired: bool = False,
) -> TlsFiles:
    """Write a fresh CA, a server certificate and an unrelated CA into ``directory``.

    Args:
        directory: Where to write the files (created if missing).
        hostnames: DNS names the server certificate is valid for.
        ips: IP addresses the server certificate is valid for. Pass ``()`` together with
            e.g. ``hostnames=("broker.example",)`` to get a certificate that does not match
            ``127.0.0.1`` (hostname-mismatch tests).
        expired: Issue a server certificate whose validity ended yesterday.

    Returns:
        The paths of the written files.

    Raises:
        ValueError: If neither hostnames nor ips are given.
    """
    identities = [*hostnames, *ips]
    if not identities:
        raise ValueError("the server certificate needs at least one hostname or IP")
    directory.mkdir(parents=True, exist_ok=True)

    ca = trustme.CA()
    if expired:
        now = dt.datetime.now(dt.UTC)
        server = ca.issue_cert(
            *identities,
            not_before=now - dt.timedelta(days=30),
            not_after=now - dt.timedelta(days=1),
        )
    else:
        server = ca.issue_cert(*identities)

    files = TlsFiles(
        ca_file=directory / "ca.pem",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        other_ca_file=directory / "other-ca.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca_file))
    files.server_cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(files.server_key))
    trustme.CA().cert_pem.write_to_path(str(files.other_ca_file))
    return files
