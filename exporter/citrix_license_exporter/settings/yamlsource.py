"""YAML read the safe way, keeping where each key and item was written.

- Only PyYAML's safe constructors are used (no Python objects).
- A key given twice in one mapping is a problem that names both lines (PyYAML alone lets the
  second one win silently).
- A syntax error names the line where the broken construct starts (an unclosed ``[`` is
  reported where it was opened, not at the end of the file).
- An invalid date such as ``2021-02-30`` stays a string, so the validators name its key path
  and go on with the other problems, instead of the whole load failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .problems import Problem

Path = tuple[str | int, ...]


# libyaml's parser when PyYAML was built with it (the wheels are): same safe constructors,
# same marks, about ten times faster than the pure-Python parser.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    pass


def _timestamp(loader: SafeConstructor, node: Node) -> object:
    try:
        return SafeConstructor.construct_yaml_timestamp(loader, node)  # type: ignore[arg-type]
    except ValueError:  # 2021-02-30: left as text for the validator to report with its path
        return loader.construct_scalar(node)  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


@dataclass
class Document:
    """A parsed YAML document and the 1-based line of every key and list item in it."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), 0, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None


def _key_text(node: Node) -> str:
    return str(node.value) if isinstance(node, ScalarNode) else f"<{node.tag}>"


def _index(node: Node, path: Path, doc: Document, seen: set[int]) -> None:
    """Record lines and duplicate keys. Each node is walked once: an alias does not repeat it
    (so "billion laughs" documents cost one walk of what was written)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _index(value_node, path, doc, seen)
                continue
            key = _key_text(key_node)
            line = key_node.start_mark.line + 1
            child = (*path, key)
            if key in first:
                doc.problems.append(Problem(
                    _join(child), f"key given twice, on lines {first[key]} and {line}; "
                    "keep one of them",
                ))
            else:
                first[key] = line
                doc.lines[child] = line
            _index(value_node, child, doc, seen)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            doc.lines[(*path, i)] = item.start_mark.line + 1
            _index(item, (*path, i), doc, seen)


def _join(path: Path) -> str:
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out = f"{out}.{key}" if out else key
    return out


def syntax_problem(exc: yaml.YAMLError, *, quote: bool = True) -> Problem:
    """One problem for a YAML syntax error, at the line where the broken construct starts.

    ``quote=False`` leaves PyYAML's own words out (they can quote a character of the file).
    """
    context_mark = getattr(exc, "context_mark", None)
    problem_mark = getattr(exc, "problem_mark", None)
    mark = context_mark or problem_mark
    line = mark.line + 1 if mark is not None else None
    if not quote:
        return Problem("", "invalid YAML", line)
    parts = [p for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p]
    reason = ", ".join(parts) if parts else str(exc).splitlines()[0]
    if context_mark is not None and problem_mark is not None \
            and problem_mark.line != context_mark.line:
        reason += f" (on line {problem_mark.line + 1})"
    return Problem("", f"invalid YAML: {reason}", line)


def load(text: str, *, quote: bool = True) -> Document:
    """Parse one YAML document. Syntax errors and duplicate keys are returned as problems
    (the data is then None)."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            return Document(None, problems=[syntax_problem(exc, quote=quote)])
        except RecursionError:
            return Document(None, problems=[Problem("", "invalid YAML: nested too deeply")])
        if node is None:
            return Document(None)
        doc = Document(None)
        try:
            _index(node, (), doc, set())
        except RecursionError:
            return Document(None, problems=[Problem("", "invalid YAML: nested too deeply")])
        if doc.problems:
            return doc
        try:
            doc.data = loader.construct_document(node)
        except yaml.YAMLError as exc:
            return Document(None, problems=[syntax_problem(exc, quote=quote)])
        except (ValueError, TypeError, RecursionError) as exc:
            reason = f"invalid YAML value: {exc}" if quote else "invalid YAML value"
            return Document(None, problems=[Problem("", reason)])
        return doc
    finally:
        loader.dispose()
