"""TLS for the amqps listener: the server's SSLContext built from the configuration, and
the login name a client certificate gives the EXTERNAL mechanism.

The context is built once at start-up; any unreadable or invalid certificate, key or CA
file is a TLSConfigError naming the file. The login name follows RabbitMQ 3.x
(rabbit_ssl:peer_cert_auth_name and rabbit_cert_info): `common_name` takes the subject's
CNs, `distinguished_name` (RabbitMQ's default) the whole subject in RabbitMQ's RFC 4514
style, which differs from cryptography's rfc4514_string in its attribute names
(EMAILADDRESS, SN, SERIALNUMBER, ...) and in escaping every byte of non-ASCII and '~'
as \\XX. The subject is read from the certificate's DER here, so the broker needs no
X.509 library at run time.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import Config

# seconds a client has from accept to the end of the TLS handshake; RabbitMQ's
# ssl_handshake_timeout is 5000 ms (the AMQP handshake has its own 10 s after that)
HANDSHAKE_TIMEOUT = 5.0

# why EXTERNAL refuses a connection, in RabbitMQ's words (rabbit_auth_mechanism_ssl)
NOT_TLS = "not a TLS-enabled connection"
NO_PEER_CERT = "connection peer presented no TLS (x.509) certificate"
NO_NAME = "no name found"
UNSAFE = "TLS configuration is unsafe"

LOGIN_MODES = ("distinguished_name", "common_name")


class TLSConfigError(OSError):
    """The TLS settings cannot be used; str() is one line naming the setting or file.
    An OSError, so a start-up that reports OSErrors as one line reports this too."""


def enabled(config: Config) -> bool:
    """True when the configuration asks for an amqps listener (tls_port set, not 0)."""
    return bool(config.tls_port)


# --- the server context ----------------------------------------------------------------

class _EncryptedKey(Exception):
    pass


def _refuse_password() -> bytes:
    # without a callback OpenSSL would prompt on the terminal for an encrypted key
    raise _EncryptedKey


def _check_readable(what: str, path: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise TLSConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _check_has_certificate(what: str, path: str) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError:
        raise TLSConfigError(f"no valid PEM certificate in {what} {path}") from None


def server_context(config: Config) -> ssl.SSLContext:
    """The amqps listener's SSLContext: TLS 1.2 or later, the broker's certificate chain,
    and client certificates requested as tls_verify_peer / tls_fail_if_no_peer_cert say
    (RabbitMQ's verify_peer / fail_if_no_peer_cert): verify_peer with fail_if_no_peer_cert
    requires one, verify_peer alone verifies one if sent, verify_none asks for none."""
    certfile = config.tls_certfile or ""
    keyfile = config.tls_keyfile or ""
    cafile = config.tls_cacertfile or ""
    verify_peer = config.tls_verify_peer
    fail_if_no_peer_cert = config.tls_fail_if_no_peer_cert
    mode = config.ssl_cert_login_from
    if not certfile:
        raise TLSConfigError("the TLS listener needs tls_certfile (the broker's certificate)")
    if fail_if_no_peer_cert and not verify_peer:
        # Erlang's ssl refuses this pair too: no certificate is asked for, none can be required
        raise TLSConfigError("tls_fail_if_no_peer_cert needs tls_verify_peer")
    if verify_peer and not cafile:
        raise TLSConfigError("tls_verify_peer needs tls_cacertfile (the CA that signs "
                             "client certificates)")
    if mode not in LOGIN_MODES:
        raise TLSConfigError(f"ssl_cert_login_from must be one of {', '.join(LOGIN_MODES)}, "
                             f"not {mode!r}")
    _check_readable("TLS certificate file", certfile)
    if keyfile:
        _check_readable("TLS key file", keyfile)
    if cafile:
        _check_readable("TLS CA certificate file", cafile)
    _check_has_certificate("TLS certificate file", certfile)
    if cafile:
        _check_has_certificate("TLS CA certificate file", cafile)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    key_source = keyfile or certfile
    try:
        context.load_cert_chain(certfile, keyfile or None, password=_refuse_password)
    except _EncryptedKey:
        raise TLSConfigError(f"the private key in {key_source} is encrypted; password-"
                             f"protected keys are not supported") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSConfigError(f"the private key in {key_source} does not match the "
                                 f"certificate in {certfile}") from None
        raise TLSConfigError(f"no valid PEM private key in {key_source}") from None
    except OSError as exc:
        raise TLSConfigError(f"cannot load {certfile}: {exc.strerror or exc}") from None
    if cafile:
        try:
            context.load_verify_locations(cafile=cafile)
        except (ssl.SSLError, OSError):
            raise TLSConfigError(f"no valid PEM certificate in TLS CA certificate file "
                                 f"{cafile}") from None
    if verify_peer:
        context.verify_mode = ssl.CERT_REQUIRED if fail_if_no_peer_cert else ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


# --- what a connection learns from its handshake ----------------------------------------

@dataclass(frozen=True)
class TLSSession:
    """The TLS facts of one connection, for EXTERNAL and for display."""

    protocol: str  # as RabbitMQ's ssl_protocol: "tlsv1.3"
    cipher: str
    peer_cert_subject: str | None  # RabbitMQ's DN string; None without a certificate
    peer_cert_issuer: str | None
    login: str | None  # the EXTERNAL login name; None when EXTERNAL must refuse
    refusal: str | None  # why EXTERNAL refuses (RabbitMQ's text) when login is None


def session_of(der: bytes | None, peer_cert: dict[str, Any] | None, protocol: str | None,
               cipher: tuple[str, str, int] | None, verify_peer: bool,
               mode: str) -> TLSSession:
    """The TLSSession of a finished handshake (once per connection)."""
    subject = issuer = login = refusal = None
    if der:
        try:
            names = _subject_and_issuer(der)
        except ValueError:
            names = None
        if names is not None:
            subject, issuer = format_dn(names[0]), format_dn(names[1])
    if not der and not peer_cert:
        refusal = NO_PEER_CERT
    elif not verify_peer:
        refusal = UNSAFE
    else:
        login = cert_login_name(peer_cert, der, mode)
        if login is None:
            refusal = NO_NAME
    return TLSSession(protocol=(protocol or "").lower(), cipher=cipher[0] if cipher else "",
                      peer_cert_subject=subject, peer_cert_issuer=issuer, login=login,
                      refusal=refusal)


# --- the login name ---------------------------------------------------------------------

# one RDN: (attribute type as a dotted OID or OpenSSL's long name, value) pairs
RDN = Sequence[tuple[str, str]]

# RabbitMQ's attribute names (rabbit_cert_info:format_rdn); any other type is printed as
# its dotted OID. streetAddress (2.5.4.9) is among the others: RabbitMQ's "STREET" entry
# matches no OID.
_SHORT_NAMES = {
    "2.5.4.4": "SN", "2.5.4.42": "GIVENNAME", "2.5.4.43": "INITIALS",
    "2.5.4.44": "GENERATIONQUALIFIER", "2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST",
    "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.12": "TITLE", "2.5.4.6": "C",
    "2.5.4.5": "SERIALNUMBER", "2.5.4.65": "PSEUDONYM", "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "EMAILADDRESS", "0.9.2342.19200300.100.1.1": "UID",
}
# the same types by the long names Python's getpeercert() dict uses
_LONG_NAMES = {
    "surname": "2.5.4.4", "givenName": "2.5.4.42", "initials": "2.5.4.43",
    "generationQualifier": "2.5.4.44", "commonName": "2.5.4.3", "localityName": "2.5.4.7",
    "stateOrProvinceName": "2.5.4.8", "organizationName": "2.5.4.10",
    "organizationalUnitName": "2.5.4.11", "title": "2.5.4.12", "countryName": "2.5.4.6",
    "serialNumber": "2.5.4.5", "pseudonym": "2.5.4.65",
    "domainComponent": "0.9.2342.19200300.100.1.25", "emailAddress": "1.2.840.113549.1.9.1",
    "userId": "0.9.2342.19200300.100.1.1", "streetAddress": "2.5.4.9",
}
_CN = "2.5.4.3"


def cert_login_name(peer_cert: dict[str, Any] | None, der: bytes | None,
                    mode: str) -> str | None:
    """The EXTERNAL login name of a client certificate (RabbitMQ's ssl_cert_login_from):
    `common_name`: the subject's CNs joined by "," (None without one);
    `distinguished_name`: the subject DN as RabbitMQ formats it, e.g.
    "CN=client,O=Example,C=GB". Reads the DER when given, else the getpeercert() dict
    (whose unusual attribute types keep OpenSSL's names). None without a certificate."""
    if mode not in LOGIN_MODES:
        raise ValueError(f"unknown ssl_cert_login_from mode {mode!r}")
    subject: list[RDN] | None = None
    if der:
        try:
            subject = _subject_and_issuer(der)[0]
        except ValueError:
            subject = None
    if subject is None and peer_cert:
        subject = [[(_LONG_NAMES.get(t, t), v) for t, v in rdn]
                   for rdn in peer_cert.get("subject", ())]
    if subject is None:
        return None
    if mode == "common_name":
        cns = [value for rdn in subject for oid, value in rdn if oid == _CN]
        return ",".join(cns) if cns else None
    return format_dn(subject)


def format_dn(rdns: Sequence[RDN]) -> str:
    """A Name (RDNs in certificate order) as RabbitMQ prints it: last RDN first, RDNs
    joined by ",", the attributes of a multi-valued RDN by "+"."""
    return ",".join("+".join(f"{_SHORT_NAMES.get(oid, oid)}={escape_dn_value(value)}"
                             for oid, value in rdn)
                    for rdn in reversed(rdns))


_DN_SPECIAL = frozenset(b'"+,;<>\\')


def escape_dn_value(value: str) -> str:
    """RFC 4514 escaping as RabbitMQ does it, over the value's UTF-8 bytes: a leading
    space or '#' and a trailing space get a backslash, as do " + , ; < > and backslash;
    bytes below 32 or from 126 ('~') up become \\XX (upper-case hex)."""
    data = value.encode("utf-8")
    last = len(data) - 1
    out = []
    for i, byte in enumerate(data):
        if (i == 0 and byte in b" #") or (i == last and byte == 0x20) or byte in _DN_SPECIAL:
            out.append("\\" + chr(byte))
        elif byte < 32 or byte >= 126:
            out.append(f"\\{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


# --- just enough DER to read a certificate's subject and issuer ---------------------------

def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at pos."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, body, start = _tlv(data, start)
        out.append((tag, body, start))
    return out


def _oid(raw: bytes) -> str:
    if not raw:
        raise ValueError("empty OID")
    parts: list[int] = []
    value = 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    first = parts[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(p) for p in head + parts[1:])


# string types as RabbitMQ's format_asn1_value reads them: teletexString as Latin-1
_STRING_CODECS = {0x0C: "utf-8", 0x13: "latin-1", 0x16: "latin-1", 0x14: "latin-1",
                  0x12: "latin-1", 0x1A: "latin-1", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}


def _name(data: bytes, start: int, end: int) -> list[RDN]:
    rdns: list[RDN] = []
    for tag, body, stop in _children(data, start, end):
        if tag != 0x31:
            raise ValueError("RDN is not a SET")
        rdn = []
        for atv_tag, atv_body, atv_end in _children(data, body, stop):
            parts = _children(data, atv_body, atv_end)
            if atv_tag != 0x30 or len(parts) != 2 or parts[0][0] != 0x06:
                raise ValueError("bad AttributeTypeAndValue")
            (_, oid_start, oid_end), (value_tag, value_start, value_end) = parts
            raw = data[value_start:value_end]
            value = raw.decode(_STRING_CODECS.get(value_tag, "latin-1"), errors="replace")
            rdn.append((_oid(data[oid_start:oid_end]), value))
        rdns.append(rdn)
    return rdns


def _subject_and_issuer(der: bytes) -> tuple[list[RDN], list[RDN]]:
    """The subject and issuer Names of a DER certificate; ValueError if it is not one."""
    tag, start, end = _tlv(der, 0)
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, start, end = _tlv(der, start)  # tbsCertificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    fields = _children(der, start, end)
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5 or fields[2][0] != 0x30 or fields[4][0] != 0x30:
        raise ValueError("not a certificate")
    return _name(der, fields[4][1], fields[4][2]), _name(der, fields[2][1], fields[2][2])
