"""A throwaway self-signed certificate for the standalone emulator's ``--tls`` (needs cryptography)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence

__all__ = ["CRYPTOGRAPHY_MISSING", "self_signed_pair"]

CRYPTOGRAPHY_MISSING = (
    "--tls without CERT KEY generates a certificate, which needs the 'cryptography' package: "
    "pip install 'yandexgpt-grpc[sa]' (or pass --tls CERT KEY)"
)


def self_signed_pair(
    hostnames: Sequence[str] = ("localhost",), ips: Sequence[str] = ("127.0.0.1", "::1")
) -> tuple[bytes, bytes]:
    """``(cert_pem, key_pem)``: one self-signed certificate that is its own CA, valid for a day.

    Being a CA (basicConstraints) lets clients pass the certificate itself as root_certificates.
    Raises ImportError when cryptography is not installed.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())  # P-256: generated in milliseconds
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "yandexgpt-grpc emulator (throwaway)")])
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
