"""Hazards (隐患), sans-IO: states, legal transitions, attachments' checks.

States: ``found`` 排查 → ``rectifying`` 整改 → ``checked`` 验收 → ``closed`` 销号. A check
that fails sends the hazard back (``checked → rectifying``), and a rectification that finds
no hazard at all sends it back to be inspected again (``rectifying → found``). ``closed``
is final. Every transition is stored with who, when and a note; an illegal one names the
allowed ones (the API answers 409 with them).

Attachments: photos and documents, checked by their first bytes (not by what the client
claims) against :data:`FILE_TYPES`.
"""

from __future__ import annotations

STATES = ("found", "rectifying", "checked", "closed")
LABELS = {"found": "排查", "rectifying": "整改", "checked": "验收", "closed": "销号"}
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "found": ("rectifying",),
    "rectifying": ("checked", "found"),
    "checked": ("closed", "rectifying"),
    "closed": (),
}
#: default severities (一般 general, 重大 major); a deployment may name its own
SEVERITIES = ("一般", "重大")

#: content type -> (its magic prefixes, file extension)
FILE_TYPES: dict[str, tuple[tuple[bytes, ...], str]] = {
    "image/jpeg": ((b"\xff\xd8\xff",), "jpg"),
    "image/png": ((b"\x89PNG\r\n\x1a\n",), "png"),
    "application/pdf": ((b"%PDF-",), "pdf"),
}


class IllegalTransition(ValueError):
    def __init__(self, state: str, to: str) -> None:
        self.state = state
        self.to = to
        self.allowed = TRANSITIONS.get(state, ())
        super().__init__(f"a hazard in state {state} ({LABELS.get(state, '?')}) cannot go to "
                         f"{to}; allowed: {', '.join(self.allowed) or 'none (closed)'}")


def check_transition(state: str, to: str) -> None:
    if to not in TRANSITIONS.get(state, ()):
        raise IllegalTransition(state, to)


def file_type(content_type: str, head: bytes) -> str | None:
    """The file's extension when its first bytes match the declared type, else None."""
    spec = FILE_TYPES.get(content_type.split(";")[0].strip().lower())
    if spec is None:
        return None
    magics, ext = spec
    return ext if any(head.startswith(m) for m in magics) else None
