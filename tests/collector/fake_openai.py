"""A local stand-in for an OpenAI-compatible chat completions endpoint, answering with one tool call, and with
a text answer once the request carries the tool's result."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

TOOL_CALL_ID: Final = "call_fake_0001"
TOOL_ARGUMENTS: Final = '{"order_id": "A-1001", "amount": 42.0}'
RESPONSE_MODEL: Final = "gpt-4.1-mini-2025-04-14"
PROMPT_TOKENS: Final = 57
COMPLETION_TOKENS: Final = 17

_COMPLETION: Final = {
    "id": "chatcmpl-fake-1",
    "object": "chat.completion",
    "created": 1_764_000_000,
    "model": RESPONSE_MODEL,
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": TOOL_CALL_ID,
                        "type": "function",
                        "function": {"name": "issue_refund", "arguments": TOOL_ARGUMENTS},
                    }
                ],
            },
        }
    ],
    "usage": {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    },
}


FINAL_ANSWER: Final = "Refunded 42.00 EUR on A-1001."
# Once the conversation holds the tool's result, the model answers in text (agents loop until it does).
_ANSWER: Final = {
    **_COMPLETION,
    "id": "chatcmpl-fake-2",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": FINAL_ANSWER}}],
}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        request = self.rfile.read(int(self.headers.get("content-length", "0")))
        if not self.path.endswith("/chat/completions"):
            self.send_error(404)
            return
        try:
            messages = json.loads(request).get("messages", [])
        except ValueError:
            messages = []
        answered = any(isinstance(m, dict) and m.get("role") == "tool" for m in messages)
        body = json.dumps(_ANSWER if answered else _COMPLETION).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # silence per-request logging
        pass


@contextmanager
def fake_openai_server() -> Iterator[str]:
    """Serves on a free loopback port; yields the base URL the openai client takes (`.../v1`)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
