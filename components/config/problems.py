"""One problem in a stack config: the key path the user wrote, what must hold, and the offending value."""

from __future__ import annotations

import difflib
import json
from typing import Any, NamedTuple


class FieldError(ValueError):
    """A model rule's finding about one of the model's keys: the problem is reported at `<model path>.<key>`."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class Problem(NamedTuple):
    """A rule's finding, printed as `path: message (got: value)`."""

    path: str           # key path as the user wrote it, e.g. teams[1].gpuQuota
    message: str        # what must hold and how to fix it
    value: Any = None   # the offending value (None: not shown)

    def __str__(self) -> str:
        return format_problem(self.path, self.message, self.value, self.value is not None)


def format_problem(path: str, message: str, value: Any, has_value: bool = True) -> str:
    shown = f" (got: {json.dumps(value, default=str)})" if has_value and not isinstance(value, (dict, list)) else ""
    return f"{path or '(top level)'}: {message}{shown}"


def known(names, value: object = None, limit: int = 12) -> str:
    """`a, b, c` for a "known: ..." hint: the closest names to `value` first, at most `limit` of them."""
    names = list(dict.fromkeys(str(n) for n in names))
    if not names:
        return "(none)"
    close = difflib.get_close_matches(str(value), names, n=limit, cutoff=0.5) if value is not None else []
    ordered = close + [n for n in names if n not in close]
    shown = ", ".join(ordered[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
