"""The audit chain without I/O: canonical bytes, entry hashes, checkpoint messages, and the
verification of a whole trail.

The encoding, precisely (so a third party can check a trail with ``sqlite3``, ``hashlib``
and an Ed25519 library):

* **canonical JSON**: UTF-8; object keys sorted by code point; no whitespace (``,`` and
  ``:`` as separators); non-ASCII characters written as themselves, not ``\\u`` escapes;
  NaN and infinities are refused. The hub stores the exact bytes it hashed, so a verifier
  hashes the stored bytes and never has to re-encode (float formatting differs between
  languages).
* **entry body**: the canonical JSON of ``{"v": 1, "seq", "time", "actor", "action",
  "subject", "details"}``; ``time`` is UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
* **entry hash**: ``hash(n) = SHA-256(hash(n-1) || body(n))`` over the raw 32-byte digest of
  the previous entry (32 zero bytes before seq 1); stored as lowercase hex. Seqs start at 1
  and have no gaps.
* **checkpoint**: the canonical JSON of ``{"type": "hub.audit.checkpoint", "v": 1, "seq",
  "head", "time", "every"}`` (``head`` = the hex hash of entry ``seq``; ``every`` = the
  hub's promise that the next checkpoint comes within that many entries), signed with
  Ed25519; the 64-byte signature is stored as hex.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

VERSION = 1
GENESIS = bytes(32)
CHECKPOINT_TYPE = "hub.audit.checkpoint"

#: what the hub records (the ``action`` of an entry)
ACTIONS = ("command.requested", "command.refused", "command.resumed", "command.finished",
           "event.acknowledged", "config.loaded", "cursor.dropped")


def canonical(obj: Any) -> bytes:
    """The canonical JSON bytes of ``obj`` (see the module docstring)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def utc_time(ts: float) -> str:
    """Epoch seconds as ``2026-01-01T00:00:00.000000Z``."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_body(seq: int, ts: float, actor: str, action: str, subject: str,
               details: dict[str, Any]) -> bytes:
    return canonical({"v": VERSION, "seq": seq, "time": utc_time(ts), "actor": actor,
                      "action": action, "subject": subject, "details": details})


def chain_hash(prev: bytes, body: bytes) -> bytes:
    return hashlib.sha256(prev + body).digest()


def checkpoint_body(seq: int, head: str, ts: float, every: int) -> bytes:
    """``every``: the signed promise that the next checkpoint comes within that many entries,
    so checkpoints deleted after this one (and the entries they signed rewritten) show."""
    return canonical({"type": CHECKPOINT_TYPE, "v": VERSION, "seq": seq, "head": head,
                      "time": utc_time(ts), "every": every})


def fingerprint(public_raw: bytes) -> str:
    """A public key's fingerprint: ``SHA256:`` and the hex digest of its 32 raw bytes."""
    return "SHA256:" + hashlib.sha256(public_raw).hexdigest()


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class EntryRow:
    """A stored entry as read back: the indexed columns and the hashed bytes."""

    seq: int
    time: str
    actor: str
    action: str
    subject: str
    body: bytes
    hash: str


@dataclass(frozen=True)
class CheckpointRow:
    seq: int
    body: bytes
    signature: str


@dataclass
class Report:
    """The outcome of :func:`verify`: ``errors`` (each naming a seq) make it fail;
    ``warnings`` (an unsigned tail) do not."""

    entries: int = 0
    checkpoints: int = 0
    last_signed: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def first_broken(self) -> int | None:
        return min(seq for seq, _ in self.errors) if self.errors else None


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def verify(entries: Iterable[EntryRow], checkpoints: Iterable[CheckpointRow],
           verify_signature: Any, *, after: tuple[int, bytes] = (0, GENESIS),
           expect_every: int | None = None) -> Report:
    """Recompute the chain of ``entries`` (in stored seq order) and check every checkpoint.

    ``after``: (seq, hash) of a trusted entry the given entries follow (the head of a
    verified checkpoint), to check only a file's tail. ``expect_every``: the configured
    ``checkpoint_every``, which a trail without any checkpoint must not be longer than.

    ``verify_signature(signature: bytes, message: bytes) -> bool`` checks with the trusted
    public key. Every problem is reported with the seq it is first seen at; the chain goes
    on from the stored hash after a broken entry, so one edit is reported once.
    """
    report = Report()
    heads: dict[int, str] = {}  # seq → recomputed hash, for the checkpoints
    expected, prev = after[0] + 1, after[1]
    for row in entries:
        report.entries += 1
        body = bytes(row.body) if not isinstance(row.body, str) else row.body.encode()
        obj = _parse(body)
        computed = chain_hash(prev, body)
        if row.seq > expected:
            gap = (f"seq {expected}" if row.seq == expected + 1
                   else f"seqs {expected}..{row.seq - 1}")
            report.errors.append((expected, f"entry missing: {gap} deleted"))
        elif obj is None:
            report.errors.append((row.seq, "entry edited: its body is not JSON"))
        elif obj.get("seq") != row.seq:
            report.errors.append((row.seq, f"entries reordered: the row at seq {row.seq} "
                                  f"holds the entry of seq {obj.get('seq')}"))
        elif computed.hex() != row.hash:
            report.errors.append((row.seq, "entry edited: its content no longer matches "
                                  "its hash"))
        elif canonical(obj) != body:
            report.errors.append((row.seq, "entry edited: its body is not canonical JSON"))
        else:
            for col in ("time", "actor", "action", "subject"):
                if obj.get(col) != getattr(row, col):
                    report.errors.append((row.seq, f"entry edited: column {col} is "
                                          f"{getattr(row, col)!r}, the hashed entry says "
                                          f"{obj.get(col)!r}"))
        heads[row.seq] = computed.hex()
        # go on from the stored hash, so a single edit is not reported for every later entry
        try:
            prev = bytes.fromhex(row.hash)
        except ValueError:
            prev = computed
        expected = max(expected, row.seq + 1)
    last = expected - 1
    last_good_checkpoint = after[0]
    promises: list[tuple[int, int]] = []  # (seq, every) of good checkpoints
    for cp in checkpoints:
        report.checkpoints += 1
        body = bytes(cp.body) if not isinstance(cp.body, str) else cp.body.encode()
        obj = _parse(body)
        try:
            sig = bytes.fromhex(cp.signature)
        except ValueError:
            sig = b""
        if obj is None or obj.get("type") != CHECKPOINT_TYPE or not verify_signature(sig, body):
            report.errors.append((cp.seq, f"checkpoint at seq {cp.seq}: bad signature (not "
                                  "signed by this public key, or altered)"))
            continue
        seq = obj.get("seq")
        if seq != cp.seq:
            report.errors.append((cp.seq, f"checkpoint at seq {cp.seq}: its signed body is "
                                  f"for seq {seq}"))
            continue
        if seq > last:
            report.errors.append((last + 1, f"checkpoint at seq {seq} signs entries that are "
                                  f"gone: seqs {last + 1}..{seq} deleted"))
        elif heads.get(seq) != obj.get("head"):
            report.errors.append((seq, f"checkpoint at seq {seq}: the signed head differs "
                                  f"from the recomputed chain: an entry in seqs "
                                  f"{last_good_checkpoint + 1}..{seq} was changed"))
        else:
            last_good_checkpoint = max(last_good_checkpoint, seq)
            every = obj.get("every")
            if isinstance(every, int) and every > 0:
                promises.append((seq, every))
    # a checkpoint deleted (with the entries it signed rewritten) breaks a signed promise
    signed_seqs = sorted({s for s, _ in promises})
    for seq, every in promises:
        following = next((s for s in signed_seqs if s > seq), last)
        if following - seq > every:
            report.errors.append((seq + 1, f"checkpoints missing: the one at seq {seq} "
                                  f"promised the next within {every} entries, but none signs "
                                  f"seqs {seq + 1}..{following}"))
    if expect_every and not promises and last - after[0] > expect_every:
        report.errors.append((after[0] + 1, f"checkpoints missing: none signs seqs "
                              f"{after[0] + 1}..{last}, though the hub signs every "
                              f"{expect_every} entries (deleted, unless the hub ran with a "
                              "larger audit.checkpoint_every)"))
    report.last_signed = last_good_checkpoint
    if last > last_good_checkpoint and not report.errors:
        report.warnings.append(
            f"entries {last_good_checkpoint + 1}..{last} are not yet signed by a checkpoint "
            "(chained, but whoever can write the file could rewrite them with the chain)")
    report.errors.sort(key=lambda e: e[0])
    return report
