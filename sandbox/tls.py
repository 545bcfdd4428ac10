"""A private CA and a loopback server certificate for the emulators served over HTTPS.

simple-salesforce builds ``https://`` URLs only, so the Salesforce emulator needs TLS; the
hub trusts the sandbox CA through ``HUB_CA_BUNDLE`` exactly as an enterprise trusts its
private CA - no ``verify=False`` anywhere. Files are reused across restarts (a client that
cached the CA keeps working) and regenerated only when missing, unreadable, not matching
each other or close to expiry.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sandbox.server import TLSFiles

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"
HOSTS = ("localhost",)
IPS = ("127.0.0.1", "::1")
#: regenerate when a certificate has less than this left
MIN_REMAINING = dt.timedelta(days=7)


def ensure_tls(directory: Path | str, *, days: int = 825) -> TLSFiles:
    """Create (or reuse) ``ca.pem``/``ca-key.pem`` and ``server.pem``/``server-key.pem`` in
    ``directory``; ``ca.pem`` is the bundle clients trust. Keys are written 0600."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(
        certfile=folder / SERVER_CERT, keyfile=folder / SERVER_KEY, ca_bundle=folder / CA_CERT
    )
    ca = _load_pair(folder / CA_CERT, folder / CA_KEY)
    if ca is None:
        ca = _new_ca(days)
        _write_pair(folder / CA_CERT, folder / CA_KEY, ca)
        server = None
    else:
        server = _load_pair(files.certfile, files.keyfile)
        if server is not None and not _signed_by(server[0], ca[0]):
            server = None
    if server is None:
        server = _new_server(ca, days)
        _write_pair(files.certfile, files.keyfile, server)
    return files


Pair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _validity(days: int) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)


def _new_ca(days: int) -> Pair:
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Subscription Integration Hub"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Hub Sandbox Local CA"),
        ]
    )
    start, end = _validity(days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server(ca: Pair, days: int) -> Pair:
    ca_cert, ca_key = ca
    key = _new_key()
    start, end = _validity(days)
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in HOSTS]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in IPS]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _load_pair(cert_path: Path, key_path: Path) -> Pair | None:
    """The certificate and key if both exist, parse, belong together and stay valid."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key: PrivateKeyTypes = serialization.load_pem_private_key(
            key_path.read_bytes(), password=None
        )
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if cert.public_key() != key.public_key():
        return None
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < MIN_REMAINING:
        return None
    return cert, key


def _signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _write_pair(cert_path: Path, key_path: Path, pair: Pair) -> None:
    cert, key = pair
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(key_path, pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (created 0600, never wider)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
