"""``/v1/blobs/{sha256}``: HEAD, PUT (streaming, hashed) and GET (streamed)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select

from ..protocol import SHA256_RE
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
    return ApiError(404, f"blob {sha} is not stored", "sha256")


def _record(ctx: Context, sha: str, size: int) -> None:
    with ctx.db.write() as session:
        if session.scalar(select(BlobRow.sha256).where(BlobRow.sha256 == sha)) is None:
            session.add(BlobRow(sha256=sha, size=size, created_at=time.time()))


@router.head(
    "/{sha256}",
    summary="Is this blob stored?",
    responses={
        200: {"description": "stored; Content-Length is its size"},
        404: {"description": "not stored"},
        **error_responses(422),
    },
)
async def head_blob(sha256: ShaPath, ctx: Ctx) -> Response:
    """200 with ``Content-Length`` when stored, 404 otherwise (no body either way)."""
    size = await in_thread(ctx.blobs.size, sha256)
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
        **error_responses(400, 413, 422),
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
async def put_blob(sha256: ShaPath, request: Request, response: Response, ctx: Ctx) -> BlobStored:
    """Store raw bytes under their sha256; 400 when they hash to another name."""
    declared = request.headers.get("content-length")
    try:
        length = int(declared) if declared is not None else None
    except ValueError:
        raise ApiError(400, "Content-Length is not a number") from None
    size, new = await ctx.blobs.put(sha256, request.stream(), declared=length)
    await in_thread(_record, ctx, sha256, size)
    response.status_code = 201 if new else 200
    return BlobStored(sha256=sha256, size=size)


@router.get(
    "/{sha256}",
    response_class=StreamingResponse,
    summary="Download a blob",
    responses={200: {"content": {"application/octet-stream": {}}}, **error_responses(404, 422)},
)
async def get_blob(sha256: ShaPath, ctx: Ctx) -> StreamingResponse:
    """The blob's bytes, streamed in chunks."""
    size = await in_thread(ctx.blobs.size, sha256)
    if size is None:
        raise _missing(sha256, ctx.blobs.was_corrupt(sha256))
    return StreamingResponse(
        ctx.blobs.iter_bytes(sha256),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(size),
            "ETag": f'"{sha256}"',
            "Cache-Control": "public, max-age=31536000, immutable",
        },
    )
