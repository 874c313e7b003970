"""A task's parameters from the command line: `--name value` tokens turned into the task's keyword arguments.

The task's signature is the only schema: `str` parameters take the text as given, everything else goes
through pydantic (JSON first, so lists, dicts, dataclasses and models are written as JSON; then pydantic's
string parsing, so dates, enums and bare words work). Every mistake is one `CliError` line ending in the
task's signature, with the usage exit code.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Collection, Sequence
from typing import Any, NoReturn

import pydantic
from pydantic import TypeAdapter, ValidationError

from flyte._env import OFF_WORDS, ON_WORDS
from flyte._interface import Parameter, TaskInterface
from flyte.io import Dir, File

from ._errors import CliError, CliUsageError

_JSON_STARTS = ('"', "[", "{")
_STRUCTURED_ORIGINS: tuple[Any, ...] = (list, tuple, dict, set, frozenset, Collection, Sequence)


def usage_error(interface: TaskInterface, what: str) -> CliError:
    return CliUsageError(f"{what}; usage: {interface.signature_text}")


def parse_task_args(
    interface: TaskInterface, tokens: Sequence[str], run_options: Collection[str] = ()
) -> dict[str, Any]:
    """The keyword arguments the tokens give; omitted optional parameters are left to the task's defaults.

    `run_options` names the caller's own options, so `--local` given after the task can be pointed out.
    """

    def fail(what: str) -> NoReturn:
        raise usage_error(interface, what)

    spellings: dict[str, Parameter] = {}
    negations: dict[str, Parameter] = {}
    for p in interface.parameters:
        for spelling in {p.name, p.name.replace("_", "-")}:
            spellings[spelling] = p
            if _is_flag(p.annotation):
                negations[f"no-{spelling}"] = p
                negations[f"no_{spelling}"] = p

    values: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not _is_option(token):
            fail(f"unexpected argument {_preview(token)}: give parameters as --param value")
        key, has_inline, inline = token[2:].partition("=")
        negated = key not in spellings and key in negations
        found = spellings.get(key) or negations.get(key)
        if found is None:
            fail(_unknown(key, [*spellings, *negations], run_options))
        p = found
        if p.name in values:
            fail(f"parameter --{key} is given more than once")
        if negated:
            if has_inline:
                fail(f"--{key} takes no value")
            values[p.name] = False
            continue
        text: str
        if has_inline:
            text = inline
        elif _is_flag(p.annotation):
            # No positional parameters exist, so a plain word after a flag can only be meant as its value.
            if i < len(tokens) and not _is_option(tokens[i]):
                text = tokens[i]
                i += 1
            else:
                values[p.name] = True
                continue
        else:
            # A following option means the value was forgotten; a value that starts with `--` needs `--x=--y`.
            if i >= len(tokens) or _is_option(tokens[i]):
                fail(f"parameter --{key} needs a value")
            text = tokens[i]
            i += 1
        values[p.name] = _convert(interface, p, key, text)

    missing = [f"--{p.name}" for p in interface.parameters if p.required and p.name not in values]
    if missing:
        noun = "parameter" if len(missing) == 1 else "parameters"
        fail(f"missing required {noun} {', '.join(missing)}")
    return values


def task_help(interface: TaskInterface, doc: str | None) -> str:
    """What `flyte run FILE TASK --help` prints: the signature, the docstring and one line per parameter."""
    lines = ["Usage: flyte run [OPTIONS] FILE TASK [--PARAM VALUE]...", "", f"  {interface.signature_text}"]
    if doc and doc.strip():
        lines += ["", *(f"  {line}".rstrip() for line in inspect.cleandoc(doc).splitlines())]
    if interface.parameters:
        lines += ["", "Parameters:"]
    for p in interface.parameters:
        flag = f"--{p.name} / --no-{p.name}" if _is_flag(p.annotation) else f"--{p.name} VALUE"
        detail = "required" if p.required else f"default: {p.default!r}"
        json_hint = ", as JSON" if _is_structured(p.annotation) else ""
        lines.append(f"  {flag:<28} {type_name(p.annotation)}{json_hint} ({detail})")
    return "\n".join(lines)


def type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _convert(interface: TaskInterface, p: Parameter, key: str, text: str) -> Any:
    annotation = p.annotation
    if annotation is str:
        return text
    if _is_flag(annotation):
        word = text.lower()
        if word in ON_WORDS:
            return True
        if word in OFF_WORDS:
            return False
        if word not in ("none", "null") or annotation is bool:
            raise usage_error(interface, f"invalid value {_preview(text)} for --{key}: expected true or false")
        return None
    if _local_path_type(annotation) is not None and not text.lstrip().startswith("{"):
        return _upload(interface, key, text, annotation)
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    except pydantic.PydanticUserError:
        raise usage_error(
            interface, f"parameter --{key} has type {type_name(annotation)}, which the command line cannot give"
        ) from None
    looks_like_json = text.lstrip().startswith(_JSON_STARTS)
    best: ValidationError | None = None
    try:
        return adapter.validate_json(text)
    except ValidationError as json_error:
        # A syntax error in text that looks like JSON (or a JSON value of the wrong shape) is the useful
        # message; for a bare word the string parser's complaint says more than "Invalid JSON".
        if looks_like_json or not _is_json_syntax_error(json_error):
            best = json_error
        try:
            return adapter.validate_strings(text)
        except ValidationError as string_error:
            best = best or string_error
        try:
            return adapter.validate_python(text)
        except ValidationError:
            pass
    hint = " (give it as JSON)" if _is_structured(annotation) and not looks_like_json else ""
    raise usage_error(
        interface,
        f"invalid value {_preview(text)} for --{key} ({type_name(annotation)}): {_describe(best)}{hint}",
    )


def _upload(interface: TaskInterface, key: str, text: str, annotation: Any) -> File | Dir:
    """A `File`/`Dir` parameter given as a local path: snapshot it into the blob store, as Flyte's CLI does."""
    kind = _local_path_type(annotation)
    try:
        if kind is File:
            return File.from_local_sync(text)
        return Dir.from_local_sync(text)
    except (OSError, ValueError) as exc:
        raise usage_error(interface, f"invalid value {_preview(text)} for --{key}: {exc}") from None


def _local_path_type(annotation: Any) -> type[File] | type[Dir] | None:
    for candidate in (annotation, *_optional_args(annotation)):
        if candidate is File or candidate is Dir:
            return candidate
    return None


def _optional_args(annotation: Any) -> tuple[Any, ...]:
    """The non-None members of `X | None`, or () for anything that is not such a union."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if type(None) in args:
            return tuple(a for a in args if a is not type(None))
    return ()


def _is_flag(annotation: Any) -> bool:
    return annotation is bool or _optional_args(annotation) == (bool,)


def _is_structured(annotation: Any) -> bool:
    """Whether values of this type are naturally written as JSON on the command line."""
    for candidate in (annotation, *_optional_args(annotation)):
        origin = typing.get_origin(candidate) or candidate
        if origin in _STRUCTURED_ORIGINS or dataclasses.is_dataclass(candidate):
            return True
        if isinstance(candidate, type) and issubclass(candidate, pydantic.BaseModel):
            return True
    return False


def _is_option(token: str) -> bool:
    return token.startswith("--") and len(token) > 2


def _is_json_syntax_error(error: ValidationError) -> bool:
    return any(e["type"] == "json_invalid" for e in error.errors())


def _describe(error: ValidationError | None) -> str:
    if error is None:
        return "not a valid value"
    problems = error.errors(include_url=False)
    parts = []
    for problem in problems[:3]:
        where = ".".join(str(part) for part in problem["loc"])
        parts.append(f"{where}: {problem['msg']}" if where else problem["msg"])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(parts) + more


def _unknown(key: str, known: list[str], run_options: Collection[str]) -> str:
    if key in run_options:
        return f"unknown parameter --{key} (flyte run's own --{key} goes before FILE)"
    close = difflib.get_close_matches(key, known, n=1)
    suggestion = f" (did you mean --{close[0]}?)" if close else ""
    return f"unknown parameter --{key}{suggestion}"


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
