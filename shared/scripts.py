"""Lua scripts shipped with floodgate, loaded from ``shared/lua``."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def lua(name: str) -> str:
    """Source of ``shared/lua/<name>.lua``."""
    return resources.files("shared").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
