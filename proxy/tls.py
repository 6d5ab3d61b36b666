"""TLS for the wire: the server SSLContext and a self-signed certificate for development.

PostgreSQL clients ask for TLS with an SSLRequest; `proxy.startup` answers `S` and upgrades the
stream when a certificate is configured. Production deployments configure a real certificate; the
demo (`make run`) generates a self-signed one with `privacylens make-cert`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


def make_self_signed(
    cert_path: Path, key_path: Path, hostnames: tuple[str, ...] = ("localhost",), days: int = 365
) -> None:
    """Write a self-signed ECDSA P-256 certificate for `hostnames` plus 127.0.0.1 and ::1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PrivacyLens development"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    alternative_names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    alternative_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
