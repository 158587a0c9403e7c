"""The responder page: one HTML document and its script modules, which read the JSON API with the
responder's key; plus the page's field lists, generated from the registry (schema/presentation.py)."""

from __future__ import annotations

from importlib import resources
from typing import Final

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response

from agentledger.schema.presentation import PAGE_FIELDS, PAGE_SUMMARY

router = APIRouter(tags=["ui"])

# Script modules and styles of the page (query_api/static/): a closed list, never a path from the request.
_ASSETS: Final = {
    "app.js": "text/javascript; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "runs.js": "text/javascript; charset=utf-8",
    "incident.js": "text/javascript; charset=utf-8",
    "content.js": "text/javascript; charset=utf-8",
    "ui.css": "text/css; charset=utf-8",
}


@router.get("/ui", response_class=HTMLResponse, responses={200: {"description": "The responder page."}})
def responder_page() -> HTMLResponse:
    """The runs list (filters, pagination) and, for a run (`?run=<id>`) or a search (`?q=`), its incident
    view: findings, approval chains, integrity, a waterfall and the timeline.

    The page itself holds no data, so it needs no key; its script sends the key the responder enters
    (kept in the tab's sessionStorage) with every API request.
    """
    return HTMLResponse(_static("ui.html").decode("utf-8"), headers=_HEADERS)


@router.get("/ui/assets/{name}", include_in_schema=False)
def page_asset(name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no page asset {name!r}")
    return Response(_static(name), media_type=media_type, headers=_HEADERS)


@router.get("/ui/presentation.json", include_in_schema=False)
def page_fields() -> JSONResponse:
    """Per timeline type, the details the page shows and how it renders each, from the registry."""
    fields = {entry_type: [{"name": name, "render": render} for name, render in pairs]
              for entry_type, pairs in PAGE_FIELDS.items()}  # fmt: skip
    return JSONResponse({"fields": fields, "summary": {k: list(v) for k, v in PAGE_SUMMARY.items()}}, headers=_HEADERS)


def _static(name: str) -> bytes:
    return resources.files("agentledger.query_api").joinpath("static", name).read_bytes()


# The page builds every element from text (never HTML strings); the policy is a second line of defence:
# nothing loads from elsewhere, no inline script runs, and the script may only talk to this API.
_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self';"
        " base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}
