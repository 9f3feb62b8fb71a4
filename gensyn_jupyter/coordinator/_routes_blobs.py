"""``/v1/blobs/{sha256}``: HEAD, PUT (streaming, hashed) and GET (streamed).

Reads are scoped (``_blob_index``): GET and HEAD answer a blob only to a
caller allowed to read it, anyone else gets the 404 of a blob that is not
stored, so a hash reveals nothing. A PUT proves the caller holds the bytes
(they are hashed) and makes it one of the blob's uploaders.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select

from ..protocol import SHA256_RE
from ._auth import AnyCaller
from ._blob_index import Caller, readable, record_upload
from ._context import Context, Ctx, in_thread
from ._db import BlobRow
from ._errors import ApiError, error_responses

__all__ = ["BlobStored", "router"]

router = APIRouter(prefix="/v1/blobs", tags=["blobs"])

ShaPath = Annotated[
    str, Path(pattern=SHA256_RE.pattern, description="lowercase hex sha256 of the bytes")
]


class BlobStored(BaseModel):
    """The answer to an upload."""

    sha256: str
    size: int


def _missing(sha: str, corrupt: bool = False) -> ApiError:
    if corrupt:
        return ApiError(
            404,
            f"blob {sha} was corrupted on the coordinator's disk (its bytes no longer hash to "
            "its name) and has been removed; upload it again",
            "sha256",
        )
    return ApiError(
        404,
        f"blob {sha} is not stored, or not readable with these credentials: a blob is "
        "served to whoever uploaded it, to the signed-in owner of a task that uses it, and "
        "to the providers leased or given a verification job on that task; send that "
        "session's or provider's token as 'Authorization: Bearer ...'",
        "sha256",
    )


def _record(ctx: Context, sha: str, size: int, caller: Caller) -> None:
    now = time.time()
    with ctx.db.write() as session:
        if session.scalar(select(BlobRow.sha256).where(BlobRow.sha256 == sha)) is None:
            session.add(BlobRow(sha256=sha, size=size, created_at=now))
        record_upload(session, sha, caller, now)


def _may_read(ctx: Context, sha: str, caller: Caller) -> bool:
    with ctx.db.read() as session:
        return readable(session, sha, caller)


def _readable_size(ctx: Context, sha: str, caller: Caller) -> int | None:
    """The blob's size when it is stored and ``caller`` may read it; None otherwise."""
    return ctx.blobs.size(sha) if _may_read(ctx, sha, caller) else None


@router.head(
    "/{sha256}",
    summary="Is this blob stored, and readable by the caller?",
    responses={
        200: {"description": "stored and readable by the caller; Content-Length is its size"},
        404: {"description": "not stored, or not readable by the caller"},
        **error_responses(401, 422),
    },
)
async def head_blob(sha256: ShaPath, ctx: Ctx, caller: AnyCaller) -> Response:
    """200 with ``Content-Length`` when the caller may GET it, 404 otherwise (no body).

    The same rule as GET: a client that dedupes uploads with HEAD and gets
    404 uploads the bytes, which proves it holds them.
    """
    size = await in_thread(_readable_size, ctx, sha256, caller)
    if size is None:
        return Response(status_code=404)
    return Response(status_code=200, headers={"Content-Length": str(size)})


@router.put(
    "/{sha256}",
    status_code=201,
    response_model=BlobStored,
    summary="Upload a blob (raw bytes)",
    responses={
        200: {"model": BlobStored, "description": "already stored"},
        **error_responses(400, 401, 413, 422),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def put_blob(
    sha256: ShaPath, request: Request, response: Response, ctx: Ctx, caller: AnyCaller
) -> BlobStored:
    """Store raw bytes under their sha256; 400 when they hash to another name.

    The caller (its session's account, its provider token, or nobody: then
    the blob is public) becomes one of the blob's uploaders and may read it.
    """
    declared = request.headers.get("content-length")
    try:
        length = int(declared) if declared is not None else None
    except ValueError:
        raise ApiError(400, "Content-Length is not a number") from None
    size, new = await ctx.blobs.put(sha256, request.stream(), declared=length)
    await in_thread(_record, ctx, sha256, size, caller)
    response.status_code = 201 if new else 200
    return BlobStored(sha256=sha256, size=size)


@router.get(
    "/{sha256}",
    response_class=StreamingResponse,
    summary="Download a blob",
    responses={
        200: {"content": {"application/octet-stream": {}}},
        **error_responses(401, 404, 422),
    },
)
async def get_blob(sha256: ShaPath, ctx: Ctx, caller: AnyCaller) -> StreamingResponse:
    """The blob's bytes, streamed in chunks, to a caller allowed to read it (404 otherwise)."""
    allowed = await in_thread(_may_read, ctx, sha256, caller)
    size = await in_thread(ctx.blobs.size, sha256) if allowed else None
    if size is None:
        raise _missing(sha256, allowed and ctx.blobs.was_corrupt(sha256))
    return StreamingResponse(
        ctx.blobs.iter_bytes(sha256),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(size),
            "ETag": f'"{sha256}"',
            "Cache-Control": "private, max-age=31536000, immutable",
        },
    )
