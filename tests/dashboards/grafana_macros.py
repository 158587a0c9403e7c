"""Expands the Grafana ClickHouse data source's macros and template variables in panel SQL the way the
plugin does, so tests can run every panel's query against chDB."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_MACRO = re.compile(r"\$__(\w+)(?:\(([^()]*)\))?")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


class UnknownMacro(ValueError):
    pass


@dataclass(frozen=True)
class GrafanaRange:
    from_s: int
    to_s: int
    interval_s: int = 60


def expand(sql: str, time_range: GrafanaRange, variables: Mapping[str, str]) -> str:
    """Macros first (their names start with $__), then ${name} / $name template variables."""

    def macro(match: re.Match[str]) -> str:
        name, argument = match.group(1), match.group(2)
        if name == "timeFilter" and argument:
            column = argument.strip()
            return f"{column} >= toDateTime({time_range.from_s}) AND {column} <= toDateTime({time_range.to_s})"
        if name == "timeInterval" and argument:
            return f"toStartOfInterval(toDateTime({argument.strip()}), INTERVAL {time_range.interval_s} second)"
        if name == "fromTime" and argument is None:
            return f"toDateTime({time_range.from_s})"
        if name == "toTime" and argument is None:
            return f"toDateTime({time_range.to_s})"
        if name == "interval_s" and argument is None:
            return str(time_range.interval_s)
        raise UnknownMacro(f"macro $__{name} is not expanded by this helper; teach it the plugin's expansion")

    expanded = _MACRO.sub(macro, sql)

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"template variable ${name} has no value")
        return variables[name]

    return _VARIABLE.sub(variable, expanded)
