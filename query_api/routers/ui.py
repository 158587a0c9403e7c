"""The responder page: one HTML document whose script reads the JSON API with the responder's key."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["ui"])


@router.get("/ui", response_class=HTMLResponse, responses={200: {"description": "The responder page."}})
def responder_page() -> HTMLResponse:
    """Search by run id, write reference or target; the run's timeline, approvals, provenance and audit.

    The page itself holds no data, so it needs no key; its script sends the key the responder enters
    (kept in the tab's sessionStorage) with every API request.
    """
    page = resources.files("agentledger.query_api").joinpath("static/ui.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers=_HEADERS)


# The page builds every element from text (never HTML strings); the policy is a second line of defence:
# nothing loads from elsewhere, and the script may only talk to this API.
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self';"
        " base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}
