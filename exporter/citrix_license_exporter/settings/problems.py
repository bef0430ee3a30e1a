"""Problems as (key path, reason, line), and pydantic's errors turned into them.

Validators raise :class:`Refusal` (or a plain ``ValueError``) with the reason in this
project's words; :func:`from_validation_error` maps pydantic's own error types (missing,
unknown key, wrong container) to the same style and attaches the line of each key path.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from .yamlsource import Document


@dataclass(frozen=True)
class Problem:
    key: str
    reason: str
    line: int | None = None

    def render(self, origin: str) -> str:
        prefix = f"{origin}: " if origin else ""
        if not self.key:
            where = f"line {self.line}" if self.line else "(top level)"
            return f"{prefix}{where}: {self.reason}"
        suffix = f" (line {self.line})" if self.line else ""
        return f"{prefix}{self.key}: {self.reason}{suffix}"


#: Error type of a refusal reported at another key than the field's: ``ctx["key"]`` is a
#: sibling key name, or None for the enclosing mapping.
RELOCATED = "relocated"


def refusal(
    reason: str, *, key: str | None = "", child: str | int | None = None
) -> PydanticCustomError:
    """A validation error with ``reason`` as its whole message. ``key``: "" for the field
    itself, a sibling key name (``password_file``), or None for the enclosing section;
    ``child``: a key or index below the field."""
    if child is not None:
        return PydanticCustomError(RELOCATED, "{reason}", {"reason": reason, "child": child})
    if key == "":
        return PydanticCustomError("refused", "{reason}", {"reason": reason})
    return PydanticCustomError(RELOCATED, "{reason}", {"reason": reason, "key": key})


class Several(ValueError):
    """More than one problem from one validator: (where, reason), ``where`` being a key path
    relative to the mapping that holds the field (``("username",)`` a sibling, ``()`` that
    mapping itself, ``("kerberos", "keytab")`` a key below the field)."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(reason for _, reason in problems))
        self.problems = problems


class Nested(Several):
    """A validator's problems (as ``Several``) and whole validations it ran itself: (where,
    error, model), each reported as if ``model`` validated the mapping at ``where`` (module
    sections, validated by their collectors' models: config.ModuleConfig)."""

    def __init__(
        self,
        problems: list[tuple[tuple[str | int, ...], str]],
        errors: Sequence[tuple[tuple[str | int, ...], ValidationError, type[BaseModel]]],
    ) -> None:
        super().__init__(problems)
        self.errors = errors


class Section(BaseModel):
    """Base of the settings models: input keys besides the fields, for "allowed:" lists."""

    #: Keys a before-validator consumes (``password_file``...), accepted in files.
    input_keys: ClassVar[frozenset[str]] = frozenset()
    #: Fields that are never written in files (``name`` of a module: its key).
    internal_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def allowed_keys(cls) -> list[str]:
        names = {f.alias or n for n, f in cls.model_fields.items()} - cls.internal_keys
        return sorted(names | cls.input_keys)


def join(path: Iterable[str | int]) -> str:
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out = f"{out}.{key}" if out else str(key)
    return out


def kind(value: object) -> str:
    kinds: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return kinds.get(type(value), type(value).__name__)


def _unwrap(annotation: Any) -> list[Any]:
    """The types an annotation may hold (Annotated, Optional and unions unwrapped)."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [t for arg in get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _model_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[Section] | None:
    """The model class that validates the mapping at ``loc`` (for its allowed keys)."""
    current: list[Any] = [root]
    for key in loc:
        following: list[Any] = []
        for candidate in current:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                for name, info in candidate.model_fields.items():
                    if key in (name, info.alias):
                        following += _unwrap(info.annotation)
                continue
            origin = get_origin(candidate)
            args = get_args(candidate)
            if isinstance(key, int) and origin in (tuple, list) and args:
                following += _unwrap(args[0])
            elif isinstance(origin, type) and issubclass(origin, Mapping) and len(args) == 2:
                following += _unwrap(args[1])
        current = following
    for candidate in current:
        if isinstance(candidate, type) and issubclass(candidate, Section):
            return candidate
    return None


def from_validation_error(
    exc: ValidationError, root: type[BaseModel], doc: Document | None = None,
    prefix: tuple[str | int, ...] = (), *, list_allowed: bool = True,
) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        kind_ = error["type"]
        ctx = error.get("ctx") or {}
        value = error.get("input")
        if loc and loc[-1] == "[key]":  # a mapping's key was refused, not its value
            loc = loc[:-1]
        if kind_ == RELOCATED and "child" in ctx:
            loc = (*loc, ctx["child"])
            reason = str(ctx["reason"])
        elif kind_ == RELOCATED:
            loc = loc[:-1] if ctx.get("key") is None else (*loc[:-1], ctx["key"])
            reason = str(ctx["reason"])
        elif kind_ == "refused":
            reason = str(ctx["reason"])
        elif kind_ == "value_error" and isinstance(ctx.get("error"), Several):
            for where, reason in ctx["error"].problems:
                full = (*prefix, *loc[:-1], *where)
                problems.append(Problem(join(full), reason, doc.line(full) if doc else None))
            if isinstance(ctx["error"], Nested):
                for where, nested, section_model in ctx["error"].errors:
                    problems.extend(from_validation_error(
                        nested, section_model, doc, (*prefix, *loc[:-1], *where),
                        list_allowed=list_allowed))
            continue
        elif kind_ == "value_error":
            reason = str(ctx.get("error", error["msg"]))
        elif kind_ == "missing":
            reason = "required"
        elif kind_ == "extra_forbidden":
            model = _model_at(root, loc[:-1]) if list_allowed else None
            allowed = f" (allowed: {', '.join(model.allowed_keys())})" if model else ""
            reason = f"unknown key{allowed}"
        elif kind_ in ("model_type", "model_attributes_type", "dict_type", "mapping_type"):
            reason = f"expected a mapping, got {kind(value)}"
        elif kind_ in ("list_type", "tuple_type", "sequence_type"):
            reason = f"expected a list, got {kind(value)}"
        else:
            reason = str(error["msg"])
        full = (*prefix, *loc)
        line = doc.line(full) if doc is not None else None
        problems.append(Problem(join(full), reason, line))
    return _unique(problems)


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out
