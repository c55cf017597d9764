"""Passwords, tokens and login throttling: the parts of authentication that know no HTTP.

- Passwords: argon2id (``argon2-cffi``'s defaults, RFC 9106's second recommended set). A
  hash of a dummy password is verified for unknown names too, so the time of a failed login
  does not tell whether the account exists.
- Tokens and API keys are random (256 bits) and stored as SHA-256: with that much entropy a
  fast hash is enough, and a lookup by hash needs no secret comparison of our own. API keys
  carry a public id (``hubk_<id>_<secret>``); the secret is compared with
  :func:`hmac.compare_digest`.
- Throttling is in memory, per account and per address (a restart forgives, the account's
  lockout does not: it is stored with the user).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id
_DUMMY = _hasher.hash("not a password of anyone")

MIN_PASSWORD = 10
MAX_PASSWORD = 256
_COMMON = {"password", "123456", "12345678", "123456789", "1234567890", "qwerty",
           "admin", "administrator", "letmein", "welcome", "iloveyou", "changeme"}


class PolicyError(ValueError):
    pass


def check_password_policy(password: str, name: str = "") -> None:
    """Raise :class:`PolicyError` (a message for the person) if ``password`` is too weak."""
    if len(password) < MIN_PASSWORD:
        raise PolicyError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise PolicyError(f"a password has at most {MAX_PASSWORD} characters")
    if len(set(password)) < 5:
        raise PolicyError("a password needs at least 5 different characters")
    low = password.lower()
    if name and name.lower() in low:
        raise PolicyError("a password must not contain the user name")
    if any(w in low for w in _COMMON if len(w) >= 6) or low in _COMMON:
        raise PolicyError("a password must not be (or contain) a common password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True if ``password`` matches ``stored``; with ``stored=None`` (no such user) the
    work is done all the same and the answer is False."""
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token(prefix: str = "hubt") -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def new_api_key() -> tuple[str, str, str]:
    """``(key_id, full_key, hash of the secret)``; the full key is shown once."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return key_id, f"hubk_{key_id}_{secret}", token_hash(secret)


def split_api_key(key: str) -> tuple[str, str] | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "hubk" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Throttle:
    """Failures allowed in ``window`` seconds before a key (an address) is refused."""

    limit: int
    window: float


class FailureCounter:
    """Failed logins per key (an address) in a sliding window, in memory, bounded."""

    def __init__(self, throttle: Throttle, max_keys: int = 100_000) -> None:
        self.throttle = throttle
        self.max_keys = max_keys
        self._fails: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        q = self._fails.get(key)
        if q is None:
            return None
        cut = now - self.throttle.window
        while q and q[0] <= cut:
            q.popleft()
        if not q:
            del self._fails[key]
            return None
        return q

    def blocked_for(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again (0: it may now)."""
        q = self._recent(key, now)
        if q is None or len(q) < self.throttle.limit:
            return 0.0
        return max(0.0, q[0] + self.throttle.window - now)

    def fail(self, key: str, now: float) -> None:
        if key not in self._fails and len(self._fails) >= self.max_keys:
            self._fails.pop(next(iter(self._fails)))  # the oldest key goes first
        q = self._fails.setdefault(key, deque())
        q.append(now)
        while len(q) > self.throttle.limit:
            q.popleft()

    def clear(self, key: str) -> None:
        self._fails.pop(key, None)
