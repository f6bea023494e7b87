"""EventBridge event patterns: the grammar check and the `aws.` source fence.

`check_pattern(pattern)` refuses, naming the path (`$or[2].detail-type[0]`), what EventBridge
would refuse or what would open the Security stream to forged events:

- grammar: the top level is a non-empty object; every field is an object (a nested field) or a
  non-empty array of matchers; a matcher is a string, number, boolean, null or an object with
  exactly one known operator (prefix, suffix, anything-but, numeric, exists, cidr,
  equals-ignore-case, wildcard) whose value has that operator's shape; `$or` is a non-empty
  array of non-empty objects.
- the fence: `PutEvents` refuses any `source` starting with `aws.`, so only AWS services can
  send such events. Every branch of the pattern (each alternative after expanding the
  top-level `$or`s) must require `source` to start with `aws.` (exact `aws.*` strings or
  `{"prefix": "aws."}`). Otherwise any principal allowed on the Security bus (the whole
  organization) could forge events that the branch matches into the SIEM stream: a
  `"AWS API Call via CloudTrail"` with a made-up `userIdentity`, but just as well a
  `"GuardDuty Finding"` or a custom application event the SIEM would trust as collected by
  watershed. watershed carries AWS services' security events only; custom events belong on a
  path of their own. A branch that cannot match CloudTrail-shaped events (its `detail-type`
  limited to exact values that are not `... via CloudTrail`) is refused all the same: a forged
  `GuardDuty Finding` is as harmful as a forged API call.

A pattern that fails is refused rather than fenced silently: adding a `source` condition to a
configured pattern would change what the operator asked for behind their back (and might turn
a custom branch into one that never matches); an error at start-up says exactly what to add.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

AWS_SOURCE_PREFIX = "aws."
CLOUDTRAIL_DETAIL_TYPE_SUFFIX = "via CloudTrail"
# The source fence as written in every pattern watershed ships.
AWS_SOURCE_FENCE: dict[str, Any] = {"source": [{"prefix": AWS_SOURCE_PREFIX}]}

_STRING_OPERATORS = ("prefix", "suffix", "cidr", "equals-ignore-case", "wildcard")
_NUMERIC_COMPARATORS = ("<", "<=", "=", ">", ">=")
OPERATORS = (*_STRING_OPERATORS, "anything-but", "numeric", "exists")


class PatternError(ValueError):
    """A pattern EventBridge would refuse, or one that lets forged events through."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path or 'pattern'}: {problem}")
        self.path = path
        self.problem = problem


def check_pattern(pattern: Any) -> None:
    """Raise PatternError naming the first problem: grammar first, then the `aws.` fence."""
    if not isinstance(pattern, Mapping) or not pattern:
        raise PatternError("", "the top level must be a non-empty JSON object")
    _check_object(pattern, "")
    for path, fields in branches(pattern):
        if not is_fenced(fields):
            kind = (
                "CloudTrail-shaped events (detail-type 'AWS API Call via CloudTrail', ...)"
                if could_match_cloudtrail(fields)
                else "events of its detail-type"
            )
            raise PatternError(
                path,
                f'this branch does not require the source to start with "aws.", so anyone '
                f"in the organization may put {kind} on the Security bus and forge them into "
                'the SIEM stream: add "source": [{"prefix": "aws."}] to it (only AWS services '
                "can send events whose source starts with aws.)",
            )


# Grammar ---------------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_object(node: Mapping[str, Any], path: str) -> None:
    for key, value in node.items():
        where = _join(path, key)
        if not isinstance(key, str) or not key:
            raise PatternError(where, "field names must be non-empty strings")
        if key == "$or":
            if not isinstance(value, list) or not value:
                raise PatternError(where, "$or must be a non-empty array of objects")
            for i, alternative in enumerate(value):
                if not isinstance(alternative, Mapping) or not alternative:
                    raise PatternError(f"{where}[{i}]", "each $or alternative must be an object")
                _check_object(alternative, f"{where}[{i}]")
        elif isinstance(value, Mapping):
            if not value:
                raise PatternError(where, "an empty object matches nothing")
            _check_object(value, where)
        elif isinstance(value, list):
            if not value:
                raise PatternError(where, "empty arrays are not allowed")
            for i, matcher in enumerate(value):
                _check_matcher(matcher, f"{where}[{i}]")
        else:
            raise PatternError(
                where, f"must be an object or an array of values, not {type(value).__name__}"
            )


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _check_matcher(matcher: Any, path: str) -> None:
    if _is_scalar(matcher):
        return
    if not isinstance(matcher, Mapping):
        raise PatternError(path, "a matcher is a value or an operator object, not a list")
    if len(matcher) != 1:
        raise PatternError(
            path, f"an operator object has exactly one operator, got {sorted(matcher)}"
        )
    ((operator, value),) = matcher.items()
    where = f"{path}.{operator}"
    if operator not in OPERATORS:
        raise PatternError(where, f"unknown operator (known: {', '.join(OPERATORS)})")
    if operator in ("prefix", "suffix"):
        # a string, or {"equals-ignore-case": string}
        if isinstance(value, Mapping) and list(value) == ["equals-ignore-case"]:
            value = value["equals-ignore-case"]
        if not isinstance(value, str):
            raise PatternError(where, "must be a string")
    elif operator in _STRING_OPERATORS:
        if not isinstance(value, str):
            raise PatternError(where, "must be a string")
    elif operator == "exists":
        if not isinstance(value, bool):
            raise PatternError(where, "must be true or false")
    elif operator == "numeric":
        _check_numeric(value, where)
    else:  # anything-but
        _check_anything_but(value, where)


def _check_numeric(value: Any, path: str) -> None:
    if not isinstance(value, list) or len(value) not in (2, 4):
        raise PatternError(path, 'must be [op, number] or [op, number, op, number], e.g. [">", 0]')
    for i in range(0, len(value), 2):
        op, number = value[i], value[i + 1]
        if op not in _NUMERIC_COMPARATORS:
            raise PatternError(f"{path}[{i}]", f"{op!r} is not one of {_NUMERIC_COMPARATORS}")
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise PatternError(f"{path}[{i + 1}]", "must be a number")


def _check_anything_but(value: Any, path: str) -> None:
    if isinstance(value, Mapping):
        if len(value) != 1 or next(iter(value)) not in (
            "prefix",
            "suffix",
            "equals-ignore-case",
            "wildcard",
        ):
            raise PatternError(
                path,
                "takes a value, an array of values, or one of prefix, suffix, "
                "equals-ignore-case, wildcard",
            )
        (inner,) = value.values()
        if not (
            isinstance(inner, str)
            or (isinstance(inner, list) and inner and all(isinstance(v, str) for v in inner))
        ):
            raise PatternError(
                path, "its operator takes a string (or a non-empty array of strings)"
            )
        return
    if isinstance(value, list):
        if not value or not all(_is_scalar(v) for v in value):
            raise PatternError(path, "must be a non-empty array of values")
        return
    if not _is_scalar(value):
        raise PatternError(path, "must be a value, an array of values or an operator object")


# The fence -------------------------------------------------------------------------------------


def branches(
    pattern: Mapping[str, Any], path: str = ""
) -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    """Each alternative of the pattern, as (path, [(top-level field, its matchers), ...]).

    The fields of one alternative are ANDed: the fields beside a `$or` apply to each of its
    alternatives (and a field may appear more than once along the way)."""
    base = [(k, v) for k, v in pattern.items() if k != "$or"]
    alternatives = pattern.get("$or")
    if not isinstance(alternatives, list):
        yield path, base
        return
    for i, alternative in enumerate(alternatives):
        for sub_path, fields in branches(alternative, f"{_join(path, '$or')}[{i}]"):
            yield sub_path, base + fields


def _matchers(fields: list[tuple[str, Any]], name: str) -> list[list[Any]]:
    return [value for key, value in fields if key == name and isinstance(value, list)]


def could_match_cloudtrail(fields: list[tuple[str, Any]]) -> bool:
    """False only if some `detail-type` condition of the branch is a list of exact strings,
    none of them a CloudTrail detail-type."""
    for matchers in _matchers(fields, "detail-type"):
        if all(
            isinstance(m, str) and CLOUDTRAIL_DETAIL_TYPE_SUFFIX.lower() not in m.lower()
            for m in matchers
        ):
            return False
    return True


def _is_aws_source(matcher: Any) -> bool:
    if isinstance(matcher, str):
        return matcher.startswith(AWS_SOURCE_PREFIX)
    if isinstance(matcher, Mapping) and list(matcher) == ["prefix"]:
        prefix = matcher["prefix"]
        return isinstance(prefix, str) and prefix.startswith(AWS_SOURCE_PREFIX)
    return False


def is_fenced(fields: list[tuple[str, Any]]) -> bool:
    """Some `source` condition of the branch admits only sources that start with `aws.`."""
    return any(all(_is_aws_source(m) for m in matchers) for matchers in _matchers(fields, "source"))
