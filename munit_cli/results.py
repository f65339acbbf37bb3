"""What the commands return: dataclasses with one JSON form, for `--json` and for callers."""

from __future__ import annotations

import dataclasses
import math
from enum import Enum
from pathlib import PurePath
from typing import Any

from munit_cli.files import display_path


@dataclasses.dataclass
class Result:
    """Base of every command's result; `to_json()` is what `--json` prints."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


def jsonable(value: Any) -> Any:
    """Paths as printable strings, enums by value, non-finite floats as null (strict JSON)."""
    if isinstance(value, Result):
        return value.to_json()
    if isinstance(value, PurePath):
        return display_path(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value
