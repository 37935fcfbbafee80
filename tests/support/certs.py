"""Throw-away TLS material for brokers in tests, generated with ``trustme``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["ClientCert", "TlsFiles", "make_client_cert", "make_tls_files"]


@dataclass(frozen=True)
class TlsFiles:
    """Paths of PEM files for a TLS test broker.

    Attributes:
        ca_file: CA certificate that signed ``server_cert``; clients trust this one.
        server_cert: Server certificate (leaf first, then chain).
        server_key: Unencrypted private key of ``server_cert``.
        other_ca_file: An unrelated CA certificate, for "client trusts the wrong CA" tests.
        ca_key: Unencrypted private key of ``ca_file``'s CA, to issue client certificates
            with :func:`make_client_cert`.
        other_ca_key: Unencrypted private key of ``other_ca_file``'s CA.
    """

    ca_file: Path
    server_cert: Path
    server_key: Path
    other_ca_file: Path
    ca_key: Path | None = None
    other_ca_key: Path | None = None


@dataclass(frozen=True)
class ClientCert:
    """A client certificate for mutual TLS and its private key (PEM files)."""

    cert: Path
    key: Path


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
        ca_key=directory / "ca.key",
        other_ca_key=directory / "other-ca.key",
    )
    ca.cert_pem.write_to_path(str(files.ca_file))
    files.server_cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(files.server_key))
    ca.private_key_pem.write_to_path(str(files.ca_key))
    other = trustme.CA()
    other.cert_pem.write_to_path(str(files.other_ca_file))
    other.private_key_pem.write_to_path(str(files.other_ca_key))
    return files


def make_client_cert(
    files: TlsFiles,
    name: str = "client",
    *,
    other_ca: bool = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    key_of: ClientCert | None = None,
) -> ClientCert:
    """Issue a client certificate (CN ``name``) next to ``files``, for mutual TLS tests.

    Args:
        files: TLS material from :func:`make_tls_files`; its CA signs the certificate.
        name: The certificate's common name; also the file names ``<name>.crt``/``.key``.
        other_ca: Sign with the unrelated CA instead (a broker verifying client
            certificates against ``files.ca_file`` rejects it).
        not_before: Start of validity (default: now, as trustme does).
        not_after: End of validity (pass a past time for an expired certificate).
        key_of: Write that certificate's key instead of this one's, for "certificate and
            key do not match" tests.

    Returns:
        The paths of the certificate and key written into the directory of ``files``.
    """
    key_file = files.other_ca_key if other_ca else files.ca_key
    cert_file = files.other_ca_file if other_ca else files.ca_file
    if key_file is None:
        raise ValueError("these TlsFiles were made without CA keys")
    ca = trustme.CA.from_pem(cert_file.read_bytes(), key_file.read_bytes())
    leaf = ca.issue_cert(common_name=name, not_before=not_before, not_after=not_after)
    directory = files.ca_file.parent
    made = ClientCert(cert=directory / f"{name}.crt", key=directory / f"{name}.key")
    leaf.cert_chain_pems[0].write_to_path(str(made.cert))
    if key_of is None:
        leaf.private_key_pem.write_to_path(str(made.key))
    else:
        made.key.write_bytes(key_of.key.read_bytes())
    return made
