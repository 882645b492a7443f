"""Lua scripts shipped with floodgate, loaded from ``shared/lua``.

Redis runs each script on its own, so a piece two scripts share lives in a file of its own and
is written into each where the script says ``--! include <name>`` (a line of its own).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_INCLUDE = re.compile(r"^--! include ([a-z_]+)$", re.MULTILINE)


def _source(name: str) -> str:
    return resources.files("shared").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


@cache
def lua(name: str) -> str:
    """Source of ``shared/lua/<name>.lua``, with the files it includes written in."""
    return _INCLUDE.sub(lambda m: _source(m.group(1)), _source(name))
