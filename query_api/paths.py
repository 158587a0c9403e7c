"""Path parameters holding free text (run ids, targets): any characters, `/` and line breaks included,
so a value that came percent-encoded from a client reaches its endpoint whole."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator
from starlette.convertors import Convertor, register_url_convertor

from agentledger.schema.run_ids import MAX_RUN_ID_BYTES, checked_run_id


class TextConvertor(Convertor[str]):
    """Like Starlette's `path`, but its `.*` stops at a line break, and a run id may hold one."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("text", TextConvertor())

RunId = Annotated[
    str,
    AfterValidator(checked_run_id),
    Path(
        description=f"The agent.run.id of the run: any UTF-8 text up to {MAX_RUN_ID_BYTES} bytes, percent-encoded"
        " (`/` as %2F)."
    ),
]
