"""The API's own documentation pages (Swagger UI and ReDoc), with their scripts served from here.

The assets come from an installed package (fastapi-offline ships Swagger UI 5 and ReDoc), never from a
CDN, so /docs works on a machine with no outside network.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

ASSET_PATH: Final = "/docs/assets"
# The only files served: a closed list, so no request path ever reaches the file system.
_ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}


# A second line of defence for "never a CDN": the browser may load nothing from elsewhere (ReDoc's
# footer logo would come from its CDN otherwise). Both pages start their script inline; ReDoc runs
# its search in a worker made from a blob.
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self';"
        " frame-ancestors 'none'"
    ),
}


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    return _with_policy(
        get_swagger_ui_html(
            openapi_url=str(request.app.openapi_url),
            title=f"{request.app.title} · Swagger UI",
            swagger_js_url=f"{ASSET_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSET_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSET_PATH}/favicon.png",
        )
    )


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    return _with_policy(
        get_redoc_html(
            openapi_url=str(request.app.openapi_url),
            title=f"{request.app.title} · ReDoc",
            redoc_js_url=f"{ASSET_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSET_PATH}/favicon.png",
            with_google_fonts=False,
        )
    )


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    page.headers.update(_HEADERS)
    return page


@router.get(ASSET_PATH + "/{name}")
def asset(name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no documentation asset {name!r}")
    body = resources.files("fastapi_offline").joinpath("static", name).read_bytes()
    return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
