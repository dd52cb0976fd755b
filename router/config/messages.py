"""Schema errors in the operator's words, not the validation library's.

pydantic words an error for the developer of the model ("Input should be a valid
integer, unable to parse string as an integer"); `check`, the admin API and the DNS
updater show it to whoever wrote the config. Each error type that a config can hit is
reworded here from its context; any other keeps pydantic's message.
"""

from __future__ import annotations

from typing import Any


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _number(ctx: dict, key: str) -> str:
    value = ctx.get(key)
    return f"{value:g}" if isinstance(value, float) else str(value)


# error type -> what the value must be
_MUST_BE = {
    "int_parsing": "a whole number", "int_type": "a whole number", "int_from_float": "a whole number",
    "float_parsing": "a number", "float_type": "a number", "bool_parsing": "true or false",
    "bool_type": "true or false", "string_type": "a string", "list_type": "a list",
    "dict_type": "a table (object)", "model_type": "a table (object)", "model_attributes_type": "a table (object)",
}
# error type -> (words, the context key of the bound)
_BOUNDS = {
    "greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
    "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt"),
}


def schema_message(err: dict) -> str:
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    if kind in _MUST_BE:
        return f"must be {_MUST_BE[kind]}, not {_shown(given)}"
    if kind in _BOUNDS:
        words, key = _BOUNDS[kind]
        return f"must be {words} {_number(ctx, key)}, not {_shown(given)}"
    if kind == "missing":
        return "required, but not set"
    if kind == "finite_number":
        return "must be a finite number (not inf or nan)"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, not {_shown(given)}"
    if kind == "string_pattern_mismatch":
        return f"{_shown(given)} does not have the required form (pattern {ctx.get('pattern')})"
    if kind == "too_short":
        least = ctx.get("min_length")
        return f"needs at least {least} item{'s' if least != 1 else ''}"
    if kind == "too_long":
        return f"has more than {ctx.get('max_length')} items"
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else f"must be at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    return err["msg"].removeprefix("Value error, ")
