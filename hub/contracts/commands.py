"""What every device model does with a canonical command before it speaks its own protocol:
check the channel against the channels the model can act on, and read ``set_threshold``'s
parameters. Shared so that every model refuses a bad command with the same words."""

from __future__ import annotations

import math
from collections.abc import Collection

from hub.contracts.device import EncodeError
from hub.model import ALARM_RULES, Command

__all__ = ["channel_problem", "threshold_params"]


def channel_problem(action: str, ch: str, channels: Collection[str]) -> str:
    """Why ``ch`` is not a channel ``action`` can act on (``channels``: those it can; ``""``
    among them means the action acts on the whole device)."""
    if "" in channels:
        return f"{action} acts on the whole device and takes no channel (got {ch!r})"
    known = ", ".join(channels)
    if not ch:
        return f"{action} needs a channel: one of {known}"
    return f"{action} has no channel {ch!r}; one of {known}"


def threshold_params(command: Command, rules: Collection[str], where: str = "here"
                     ) -> tuple[str, float]:
    """The alarm rule and the new set point of a ``set_threshold`` command.

    ``params`` name the rule (``rule``, or a ``quantity`` with one settable rule) and a finite
    number ``value``; ``rules`` are the rules this device can set, ``where`` names the map
    that says so (for the message). Raises :class:`EncodeError` saying what was wrong."""
    params = dict(command.params)
    extra = set(params) - {"rule", "quantity", "value"}
    if extra:
        raise EncodeError(f"set_threshold takes params rule (or quantity) and value, "
                          f"not {', '.join(sorted(extra))}")
    rules = sorted(set(rules))
    rule, q = params.get("rule"), params.get("quantity")
    if rule is None:
        if q is None:
            raise EncodeError(f"set_threshold needs params.rule (one of {', '.join(rules)}) "
                              "and params.value")
        matches = [r for r in rules if ALARM_RULES[r].quantity == q]
        if len(matches) != 1:
            which = f"is ambiguous ({', '.join(matches)})" if matches else "has no set point"
            raise EncodeError(f"quantity {q!r} {which}; give params.rule")
        rule = matches[0]
    elif rule not in rules:
        raise EncodeError(f"rule {rule!r} has no set point {where} "
                          f"(settable: {', '.join(rules)})")
    elif q is not None and ALARM_RULES[rule].quantity != q:
        raise EncodeError(f"rule {rule!r} is about {ALARM_RULES[rule].quantity}, not {q!r}")
    value = params.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EncodeError(f"set_threshold params.value must be a number, got {value!r}")
    return rule, float(value)
