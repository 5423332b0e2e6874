"""/api/v2/volumes/{name}/zarr/{key}: the objects of an OME-Zarr volume asset, for viewers
in the browser: byte ranges (206, ``Accept-Ranges``) and CORS headers, so that a viewer on
another origin can read it with the caller's token (``Authorization: Bearer``); no cookie
is accepted from another origin (no ``Access-Control-Allow-Credentials``)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response

from neuroferry.auth import User
from neuroferry.pipelines.ingest import RangeNotSatisfiable, read_object, volume_asset
from neuroferry.services import Services
from neuroferry.web._deps import current_user, services

router = APIRouter(prefix="/volumes", tags=["volumes"])

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Accept-Ranges, Content-Length, Content-Range, ETag",
}
PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Range",
    "Access-Control-Max-Age": "600",
}


@router.options(
    "/{name}/zarr/{key:path}",
    status_code=204,
    summary="CORS preflight of a volume's objects",
    response_class=Response,
)
def preflight(name: str, key: str) -> Response:
    """What a viewer on another origin may send (no authentication: nothing is read)."""
    return Response(status_code=204, headers=PREFLIGHT)


@router.get(
    "/{name}/zarr/{key:path}",
    summary="An object of an OME-Zarr volume (byte ranges allowed)",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "The range asked for", "content": {"application/octet-stream": {}}},
        413: {"description": "More bytes asked for than one response carries (64 MiB)"},
        416: {"description": "The range lies outside the object"},
    },
)
async def volume_object(
    request: Request,
    name: str,
    key: str,
    range_: str | None = Header(None, alias="Range"),
    held: Services = Depends(services),
    user: User = Depends(current_user),
) -> Response:
    """Object ``key`` of the volume asset ``name`` (``zarr.json``, ``0/zarr.json``,
    ``0/c/0/0/0/0/0`` …); 404 for an asset the caller may not read or a key that is not
    part of its OME-Zarr; 413 for more than 64 MiB at once (ask for parts with ``Range``).
    HEAD reads no byte of the object."""

    def read() -> Response:
        volume = volume_asset(held.catalog, name, user)
        try:
            piece = read_object(volume, key, held.settings, range_, body=request.method != "HEAD")
        except RangeNotSatisfiable as exc:
            return Response(
                str(exc),
                status_code=416,
                headers={**CORS, "Content-Range": f"bytes */{exc.size}"},
            )
        headers = {**CORS, "Accept-Ranges": "bytes", "Cache-Control": "private, no-cache"}
        if request.method == "HEAD":  # its size, without reading it
            headers["Content-Length"] = str(piece.end - piece.start)
        if piece.etag:
            headers["ETag"] = f'"{piece.etag}"'
        if piece.partial:
            headers["Content-Range"] = f"bytes {piece.start}-{piece.end - 1}/{piece.size}"
        kind = "application/json" if key.rsplit("/", 1)[-1] == "zarr.json" else None
        return Response(
            piece.data,
            status_code=206 if piece.partial else 200,
            headers=headers,
            media_type=kind or "application/octet-stream",
        )

    return await asyncio.to_thread(read)


# HEAD answers as GET without the body (one operation in the API's schema)
router.add_api_route(
    "/{name}/zarr/{key:path}",
    volume_object,
    methods=["HEAD"],
    include_in_schema=False,
    response_class=Response,
)
