"""The firmware repository's checks and files: size, SHA-256, the vendor's signature.

An image is accepted only whole and checked: at most ``max_image`` bytes
(``api.ota.max_image_kb``, a limit of its own: the API streams an upload to disk through
:class:`Upload`, hashing as it goes, instead of holding it within ``api.max_body_kb``), its
SHA-256 recorded, and, when the project's configuration names vendor keys, an Ed25519 signature
over the image bytes by one of them (``require_signature`` refuses unsigned images). The
bytes are written under ``<state_dir>/firmware/<sha256>`` (write to a temporary name, fsync,
rename), so what the hub later serves to devices is what was checked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

__all__ = ["ImageError", "ImageStore", "Upload", "load_public_key", "verify_signature"]


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

    def too_big(self, size: int | None = None) -> ImageError:
        has = f"the image has {size} bytes" if size is not None else "the image is larger"
        return ImageError(f"{has}; at most {self.max_image} bytes "
                          f"(api.ota.max_image_kb {self.max_image // 1024}) are accepted", 413)

    def upload(self) -> Upload:
        """A streamed image: written to a temporary file here, hashed as it arrives."""
        return Upload(self)

    def check(self, image: bytes, signature: str | None) -> Checked:
        """Refuse an empty or oversized image, a bad or (when required) missing signature;
        ``signature`` is base64 or hex text."""
        if not image:
            raise ImageError("the image is empty", 422)
        if len(image) > self.max_image:
            raise self.too_big(len(image))
        return Checked(hashlib.sha256(image).hexdigest(), len(image),
                       self._signed(image, signature))

    def _signed(self, image: bytes, signature: str | None) -> bool:
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
        return signed

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


class Upload:
    """One image arriving in chunks: each is hashed and written to a temporary file in the
    store's directory as it comes, so an image never has to fit a request body's limit nor
    sit in memory whole. Over ``max_image`` it raises (413) and removes what it wrote;
    :meth:`keep` moves a checked image under its SHA-256, :meth:`discard` drops it."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        os.makedirs(store.directory, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=".upload-", dir=store.directory)
        self._file = os.fdopen(fd, "wb")
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.store.max_image:
            self.discard()
            raise self.store.too_big()
        self._sha.update(chunk)
        self._file.write(chunk)

    def finish(self, signature: str | None) -> Checked:
        """The whole image is in: durable on disk, checked (blocking: a worker thread)."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if not self.size:
                raise ImageError("the image is empty", 422)
            signed = False
            if signature or self.store.require_signature:
                # Ed25519 signs the message whole (no streaming form): read back once
                with open(self.tmp, "rb") as f:
                    signed = self.store._signed(f.read(), signature)
            return Checked(self._sha.hexdigest(), self.size, signed)
        except BaseException:
            self.discard()
            raise

    def keep(self, sha256: str) -> bool:
        """Move the image to its place; whether it is new (False: that file existed)."""
        final = self.store.path(sha256)
        if os.path.exists(final):
            self.discard()
            return False
        os.replace(self.tmp, final)
        return True

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        try:
            os.unlink(self.tmp)
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
