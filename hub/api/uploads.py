"""Uploaded photos and documents (hazard files, inspection photos): the raw request body
with its ``Content-Type``, at most :data:`MAX_FILE` bytes (413), its type checked by its
first bytes against :data:`hub.alarmdesk.hazards.FILE_TYPES` (415), then written under
``state_dir`` atomically (named by its SHA-256). The checks come before anything is
written, so a refused upload leaves nothing behind; the act is audited between the check
and the write (:func:`receive`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import HTTPException, Path, Request
from fastapi.responses import FileResponse

from hub.alarmdesk.hazards import FILE_TYPES, file_type

MAX_FILE = 1024 * 1024  # bytes; the API's max_body bounds it too

#: the responses and request body an upload route documents
RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "larger than the limit"},
    415: {"description": f"not one of {', '.join(FILE_TYPES)} (checked by content)"}}
#: the responses a download route documents
DOWNLOAD: dict[int | str, dict[str, Any]] = {200: {"content": {t: {} for t in FILE_TYPES}}}
#: a stored file's id in a download route's path
FileId = Annotated[int, Path(ge=1, le=2**62)]
BODY = {"requestBody": {"required": True, "content": {
    t: {"schema": {"type": "string", "format": "binary"}} for t in FILE_TYPES}}}


@dataclass(frozen=True)
class Upload:
    data: bytes
    content_type: str  # the MIME type without parameters
    ext: str
    sha256: str


async def checked(request: Request) -> Upload:
    """The request's body, or the 413/415 that says what is wrong with it."""
    data = await request.body()
    if len(data) > MAX_FILE:
        raise HTTPException(413, f"files are at most {MAX_FILE} bytes")
    content_type = request.headers.get("content-type", "")
    ext = file_type(content_type, data[:16])
    if ext is None:
        raise HTTPException(415, f"attach {', '.join(FILE_TYPES)}; the content must match "
                                 "its Content-Type")
    return Upload(data, content_type.split(";")[0].strip().lower(), ext,
                  hashlib.sha256(data).hexdigest())


def save(upload: Upload, folder: str) -> str:
    """Write it under ``folder`` (fsync, then rename: never half a file); its path. Runs
    on a worker thread."""
    path = os.path.join(folder, f"{upload.sha256}.{upload.ext}")
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(upload.data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


async def receive(request: Request, ctx: Any, by: str, action: str, subject: str,
                  details: dict[str, Any], *folder: str) -> tuple[Upload, float, str]:
    """An upload route's common part: the body :func:`checked`, the act audited (with the
    file's hash and size after ``details``), then :func:`saved <save>` under
    ``state_dir``/``folder``; the upload, the time and the stored path."""
    up = await checked(request)
    now = ctx.hub.clock.seconds()
    await ctx.audit(by, action, subject, {**details, "sha256": up.sha256,
                                          "size": len(up.data)})
    path = await ctx.run(save, up, os.path.join(ctx.hub.config.state_dir, *folder))
    return up, now, path


async def send(ctx: Any, files_of: Callable[[int], list[dict[str, Any]]], owner: int,
               file_id: int, what: str) -> FileResponse:
    """A download route's common part: ``owner``'s stored files read from the store, then
    :func:`download`."""
    return download(await ctx.run(files_of, owner), file_id, what)


def download(files: list[dict[str, Any]], file_id: int, what: str) -> FileResponse:
    """The stored file ``file_id`` of ``files`` (rows with ``id``, ``path``,
    ``content_type``, ``name``), or a 404 naming ``what``."""
    from hub.api.deps import not_found

    f = next((f for f in files if f["id"] == file_id), None)
    if f is None or not os.path.exists(f["path"]):
        raise not_found(what)
    return FileResponse(f["path"], media_type=f["content_type"], filename=f["name"])
