"""The firmware repository's checks and files: size, SHA-256, the vendor's signature.

An image is accepted only whole and checked: at most ``max_image`` bytes, its SHA-256
recorded, and, when the project's configuration names vendor keys, an Ed25519 signature
over the image bytes by one of them (``require_signature`` refuses unsigned images). The
bytes are written under ``<state_dir>/firmware/<sha256>`` (write to a temporary name, fsync,
rename), so what the hub later serves to devices is what was checked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

__all__ = ["ImageError", "ImageStore", "load_public_key", "verify_signature"]


class ImageError(ValueError):
    """An image refused: ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def load_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM text or 32 raw bytes in base64 or hex."""
    t = text.strip()
    if t.startswith("-----BEGIN"):
        key = load_pem_public_key(t.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM key is not an Ed25519 public key")
        return key
    raw = _hex_or_base64(t, 32)
    if raw is None:
        raise ValueError("not an Ed25519 public key (PEM, or 32 bytes in hex or base64)")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_signature(image: bytes, signature: bytes,
                     keys: Sequence[Ed25519PublicKey]) -> bool:
    """Whether one of ``keys`` signed ``image`` (Ed25519 over the image bytes)."""
    for key in keys:
        try:
            key.verify(signature, image)
            return True
        except InvalidSignature:
            continue
    return False


@dataclass(frozen=True)
class Checked:
    sha256: str
    size: int
    signed: bool


class ImageStore:
    """Image files under ``directory``, named by their SHA-256."""

    def __init__(self, directory: str, max_image: int,
                 keys: Sequence[Ed25519PublicKey] = (), require_signature: bool = False) -> None:
        self.directory = directory
        self.max_image = max_image
        self.keys = list(keys)
        self.require_signature = require_signature

    def check(self, image: bytes, signature: str | None) -> Checked:
        """Refuse an empty or oversized image, a bad or (when required) missing signature;
        ``signature`` is base64 or hex text."""
        if not image:
            raise ImageError("the image is empty", 422)
        if len(image) > self.max_image:
            raise ImageError(f"the image has {len(image)} bytes; at most {self.max_image} "
                             "are accepted", 413)
        signed = False
        if signature:
            if not self.keys:
                raise ImageError("a signature was given but no vendor key is configured "
                                 "(api.ota.vendor_keys) to check it", 422)
            sig = _decode_signature(signature)
            if not verify_signature(image, sig, self.keys):
                raise ImageError("the signature does not verify with any configured vendor "
                                 "key", 422)
            signed = True
        elif self.require_signature:
            raise ImageError("this hub accepts only signed images (give signature=)", 422)
        return Checked(hashlib.sha256(image).hexdigest(), len(image), signed)

    def path(self, sha256: str) -> str:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"{sha256!r} is not a SHA-256 in hex")
        return os.path.join(self.directory, sha256)

    def save(self, image: bytes, sha256: str) -> str:
        os.makedirs(self.directory, exist_ok=True)
        final = self.path(sha256)
        if os.path.exists(final):
            return final
        tmp = f"{final}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(image)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return final

    def load(self, sha256: str) -> bytes:
        """The image, checked again against its name (a file changed on disk is refused)."""
        with open(self.path(sha256), "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ImageError(f"firmware file {sha256} changed on disk; upload it again", 409)
        return data

    def remove(self, sha256: str) -> None:
        try:
            os.unlink(self.path(sha256))
        except FileNotFoundError:
            pass


def _decode_signature(text: str) -> bytes:
    sig = _hex_or_base64(text.strip(), 64)
    if sig is None:
        raise ImageError("the signature is not 64 bytes in hex or base64 (Ed25519)", 422)
    return sig


def _hex_or_base64(text: str, length: int) -> bytes | None:
    """``length`` bytes written in hex or base64, or None."""
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            raw = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(raw) == length:
            return raw
    return None
