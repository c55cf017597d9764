"""The checkpoint signing key: Ed25519, a PKCS #8 PEM file readable by the hub's user only,
with its public half exported beside it for verifiers."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.audit.chain import fingerprint


class AuditKeyError(ValueError):
    """A key file that cannot be used (unreadable, not an Ed25519 key in PEM)."""


def public_path(key_file: str) -> str:
    """``audit_key.pem`` → ``audit_key.pub.pem``."""
    root = key_file[:-4] if key_file.endswith(".pem") else key_file
    return root + ".pub.pem"


def load_private(path: str) -> Ed25519PrivateKey:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AuditKeyError(f"cannot read {path}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise AuditKeyError(f"{path} is not an unencrypted private key in PEM: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_public(path: str) -> Ed25519PublicKey:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AuditKeyError(f"cannot read {path}: {e.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise AuditKeyError(f"{path} is not a public key in PEM: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def key_fingerprint(key: Ed25519PublicKey) -> str:
    return fingerprint(key.public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw))


def load_or_create(path: str) -> tuple[Ed25519PrivateKey, bool]:
    """The private key at ``path``, generated (mode 0600) if there is none; the public key
    is (re)written beside it when missing or different. Returns (key, created)."""
    created = False
    if os.path.exists(path):
        key = load_private(path)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        # O_EXCL with the mode at creation: the key is never readable by others, not even
        # for the moment between a write and a chmod
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        created = True
    pub = public_pem(key.public_key())
    pub_file = public_path(path)
    try:
        with open(pub_file, "rb") as f:
            current = f.read()
    except OSError:
        current = b""
    if current != pub:
        with open(pub_file, "wb") as f:
            f.write(pub)
    return key, created


def verifier(key: Ed25519PublicKey):
    """``(signature, message) -> bool`` for :func:`hub.audit.chain.verify`."""
    def check(signature: bytes, message: bytes) -> bool:
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            return False
    return check
