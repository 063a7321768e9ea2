"""JSON-schema checks shared by the parameters (maln/config.py) and the files the project reads back
(maln/readback.py), with two differences from plain JSON schema: an integer is an int (not 8.0),
and a number must be finite. YAML's .nan and .inf (and JSON's NaN) are floats, so `type: number`
admits them, and every range keyword compares false against NaN; here they fail `type`, and the
message names the key and the allowed range, so a bad value stops before any work starts instead
of deep inside torch or numpy."""

from __future__ import annotations

import functools
import itertools
import math

# What a message shows of a value: a number of thousands of digits would fill the terminal. (One of
# more than 4300 digits never gets here: YAML's and JSON's readers refuse to convert it.)
SHOWN = 40


def _finite_number(checker, x) -> bool:
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (isinstance(x, float) and math.isfinite(x))


def _integer(checker, x) -> bool:
    """An int, not a float of integral value as JSON schema allows: `batch_dialogues: 8.0` would
    reach range() and slicing, which refuse floats (a traceback after the work began)."""
    return isinstance(x, int) and not isinstance(x, bool)


def _key(x):
    """A hashable stand-in for a JSON value, equal where JSON schema calls two values equal (1 and
    1.0 alike, true and 1 not)."""
    if isinstance(x, bool) or x is None:
        return ("b", x)
    if isinstance(x, (int, float)):
        return ("n", x)
    if isinstance(x, dict):
        return ("d", frozenset((k, _key(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return ("l", tuple(map(_key, x)))
    return ("s", x)


def _unique_items(validator, unique, instance, schema):
    """uniqueItems in linear time: jsonschema compares unhashable items pairwise, and a params file
    of a few thousand small mappings in one list took it half a minute."""
    from jsonschema.exceptions import ValidationError

    if unique and validator.is_type(instance, "array"):
        seen = set()
        for item in instance:
            key = _key(item)
            if key in seen:
                yield ValidationError(f"{shown(item)} appears more than once")
                return
            seen.add(key)


@functools.cache
def _validator_class():
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many({"number": _finite_number, "integer": _integer})
    return jsonschema.validators.extend(base, {"uniqueItems": _unique_items}, type_checker=checker)


def validator(schema: dict):
    """A Draft 2020-12 validator of `schema` whose numbers are finite."""
    return _validator_class()(schema)


def shown(x) -> str:
    """A value as a message shows it: repr, except for numbers too long to read."""
    if isinstance(x, int) and not isinstance(x, bool) and abs(x) >= 10**SHOWN:
        return f"a {len(str(abs(x)))}-digit number"
    text = repr(x)
    if len(text) <= 2 * SHOWN:
        return text
    if isinstance(x, (list, dict)):
        return f"a {'list' if isinstance(x, list) else 'mapping'} of {len(x)} item{'s' * (len(x) != 1)}"
    return text[:2 * SHOWN] + "..."


def allowed(schema: dict) -> str | None:
    """The range a numeric schema allows, as a message says it ('an integer, 1 <= value <= 100')."""
    types = schema.get("type")
    types = set(types if isinstance(types, list) else [types]) - {"null"}
    if not types or not types <= {"number", "integer"}:
        return None  # no type, or a number among other kinds (a sweep's values): no range to state
    kind = "a number" if "number" in types else "an integer"
    low = (f"{schema['minimum']} <= " if "minimum" in schema
           else f"{schema['exclusiveMinimum']} < " if "exclusiveMinimum" in schema else "")
    high = (f" <= {schema['maximum']}" if "maximum" in schema
            else f" < {schema['exclusiveMaximum']}" if "exclusiveMaximum" in schema else "")
    return f"{kind}, {low}value{high}" if low or high else kind


RANGE = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def message(err) -> str:
    """jsonschema's message for one error, with the value shortened and, for a number out of its
    range, not finite or of the wrong type, the allowed range."""
    text = err.message
    if err.validator in RANGE + ("type",):
        long = repr(err.instance)
        if len(long) > 2 * SHOWN:
            text = text.replace(long, shown(err.instance))
        if err.validator == "type" and isinstance(err.instance, float) and not math.isfinite(err.instance):
            text = f"{err.instance} is not a finite number"
        if (rng := allowed(err.schema)) is not None:
            text += f" (allowed: {rng})"
    return text


def describe(err) -> str:
    """'key.path: problem' for one error, in the words of a params.yaml message."""
    at = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        return f"{at}: unknown key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}"
    if err.validator == "oneOf":
        # the params schema's only oneOf: where a raw file comes from
        return f"{at}: give either url + sha1 (a pinned download) or path (a file you place), not both"
    if err.validator in ("anyOf", "allOf") and err.context:
        from jsonschema.exceptions import best_match

        inner = best_match(err.context)
        if inner.validator not in ("not",):
            return describe(inner)
    if err.validator == "not":
        return f"{at}: this combination of keys is not allowed here (see the comments in params.yaml)"
    if err.validator == "enum":
        return f"{at}: {shown(err.instance)} is not one of {', '.join(map(str, err.validator_value))}"
    return f"{at}: {message(err)}"


# Errors looked at, at most: a document of thousands of wrong values would otherwise spend seconds
# describing errors that no message shows.
LOOKED_AT = 200


def problems(instance, schema: dict, limit: int = 12) -> list[str]:
    """'key.path: problem' for each way `instance` breaks `schema`, at most `limit`, in key order."""
    errors = sorted(itertools.islice(validator(schema).iter_errors(instance), LOOKED_AT),
                    key=lambda e: list(map(str, e.absolute_path)))
    return [describe(e) for e in errors[:limit]]
