"""Editing nested configuration dictionaries by key path."""

from __future__ import annotations

import copy
from typing import Any


def set_at(base: dict, path: tuple, value: Any) -> dict:
    """A deep copy of ``base`` with ``value`` at the key ``path``."""
    data = copy.deepcopy(base)
    node = data
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return data

