"""Certificates made at test time (cryptography): a CA, server and client certificates
signed by it, written as PEM files into a test's directory. EC P-256 keys, so making
them takes milliseconds."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def name(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    """A Name of single-valued RDNs, in certificate order (the DN prints them reversed)."""
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


@dataclass
class Issued:
    """One certificate and its key, in memory and as PEM files."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    certfile: Path
    keyfile: Path

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _write(directory: Path, stem: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> Issued:
    directory.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = directory / f"{stem}.crt", directory / f"{stem}.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8, encryption))
    return Issued(cert, key, certfile, keyfile)


def _builder(subject: x509.Name, issuer: x509.Name,
             key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2)))


class CA:
    """A self-signed CA in `directory` (ca.crt, ca.key) that issues certificates."""

    def __init__(self, directory: Path, common_name: str = "Test CA") -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = name((NameOID.ORGANIZATION_NAME, "amqp-broker tests"),
                       (NameOID.COMMON_NAME, common_name))
        cert = (_builder(subject, subject, self.key)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False),
                    critical=True)
                .sign(self.key, hashes.SHA256()))
        self.issued = _write(directory, "ca", cert, self.key)
        self.cert = cert
        self.certfile = self.issued.certfile

    def issue(self, stem: str, subject: x509.Name, *, server: bool = False,
              password: bytes | None = None) -> Issued:
        """A certificate for subject: a server one (SAN localhost and 127.0.0.1, serverAuth)
        or a client one (clientAuth); the key encrypted when a password is given."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (_builder(subject, self.cert.subject, key)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.SERVER_AUTH if server
                        else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return _write(self.directory, stem, builder.sign(self.key, hashes.SHA256()), key,
                      password)

    def server(self) -> Issued:
        return self.issue("server", name((NameOID.COMMON_NAME, "localhost")), server=True)

    def client(self, stem: str = "client", common_name: str = "client") -> Issued:
        return self.issue(stem, name((NameOID.COUNTRY_NAME, "GB"),
                                     (NameOID.ORGANIZATION_NAME, "Example"),
                                     (NameOID.COMMON_NAME, common_name)))
