"""The one YAML loader of every entry point (spec files, the web page's text boxes, the CLI's inline values).

YAML (a superset of JSON) is read with PyYAML's safe loader, narrowed to what JSON can say and bounded before
anything large is built:

* only JSON's types: mappings, sequences, strings, integers, floats, booleans and null (``<<`` merge keys
  allowed); ``!!set``, ``!!binary``, ``!!timestamp`` (an unquoted ``2024-01-01``), ``!!omap`` and custom tags
  are refused with their line;
* integers within int64: a digit string longer than ``MAX_INT_DIGITS`` is refused before Python converts it
  (a 5,000-digit integer would raise in ``int()``), a shorter one outside int64 after;
* at most ``MAX_YAML_BYTES`` characters, ``MAX_YAML_DEPTH`` levels of nesting and ``MAX_YAML_NODES`` nodes,
  *each alias counted as a full copy of what it repeats*: a "billion laughs" document (a few hundred bytes of
  nested aliases expanding to gigabytes once serialized or validated) is refused from its node graph, in time
  linear in its text, before any Python object is constructed. Recursive aliases are refused too.

Every refusal is an ``InvalidInput`` (or the subclass the caller names) whose message gives the line and,
for a budget, the budget's name and value.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from lrserve.schemas.errors import FieldError, InvalidInput
from lrserve.schemas.limits import (
    MAX_INT64,
    MAX_INT_DIGITS,
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    MIN_INT64,
)

_TAG = "tag:yaml.org,2002:"
_ALLOWED_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge"))
_DIGITS = re.compile(r"[0-9a-fA-F]")


class _Refused(Exception):
    """A rule of this module broken at ``mark`` (turned into the caller's error class by ``load_yaml``)."""

    def __init__(self, msg: str, node: Node | None = None, mark: Any = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.mark = mark if mark is not None else (node.start_mark if node is not None else None)


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader whose composer refuses documents nested deeper than ``MAX_YAML_DEPTH``.

    The composer recurses once per level; bounding it keeps ``[[[[...`` from exhausting the stack. The
    remaining checks (tags, integers, the node budget with aliases expanded) run on the composed graph in
    ``check_node`` before ``construct_document``.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Refused(f"nested deeper than {MAX_YAML_DEPTH} levels (MAX_YAML_DEPTH)", mark=mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def check_node(root: Node, loader: yaml.SafeLoader) -> None:
    """Refuse a composed document breaking a rule of the module docstring; aliases count as copies.

    A node reached again through an alias is the same object, so its expanded size is computed once
    (memoized by identity): linear in the composed graph, however large the expansion.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id -> (expanded nodes, expanded depth)
    open_: set[int] = set()
    total = 0

    def visit(node: Node) -> tuple[int, int]:
        nonlocal total
        key = id(node)
        done = sizes.get(key)
        if done is not None:
            total += done[0]
            _within_budget(total, node)
            return done
        if key in open_:
            raise _Refused("a recursive alias (an anchor used inside itself) cannot be expanded", node)
        if isinstance(node, ScalarNode):
            _check_scalar(node, loader)
            total += 1
            _within_budget(total, node)
            sizes[key] = (1, 1)
            return sizes[key]
        _check_tag(node)
        open_.add(key)
        total += 1
        _within_budget(total, node)
        before = total - 1
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        depth = 1
        for child in children:
            depth = max(depth, 1 + visit(child)[1])
            if depth > MAX_YAML_DEPTH:
                raise _Refused(f"nested deeper than {MAX_YAML_DEPTH} levels once aliases are expanded", node)
        open_.discard(key)
        sizes[key] = (total - before, depth)
        return sizes[key]

    visit(root)


def _within_budget(total: int, node: Node) -> None:
    if total > MAX_YAML_NODES:
        raise _Refused(
            f"the document expands to more than {MAX_YAML_NODES} nodes (MAX_YAML_NODES; each alias counts as a "
            "copy of what it repeats)",
            node,
        )


def _check_tag(node: Node) -> None:
    if node.tag not in _ALLOWED_TAGS:
        name = "!!" + node.tag.removeprefix(_TAG) if node.tag.startswith(_TAG) else node.tag
        hint = " (quote a date to make it a string)" if name == "!!timestamp" else ""
        raise _Refused(
            f"tag {name} is not allowed: only JSON's types (mapping, list, string, number, bool, null){hint}", node
        )


def _check_scalar(node: ScalarNode, loader: yaml.SafeLoader) -> None:
    _check_tag(node)
    if node.tag != _TAG + "int":
        return
    digits = len(_DIGITS.findall(node.value))
    if digits > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {digits} digits is outside int64 (at most {MAX_INT64})", node)
    value = loader.construct_yaml_int(node)
    if not MIN_INT64 <= value <= MAX_INT64:
        raise _Refused(f"the integer {value} is outside int64 (at most {MAX_INT64})", node)


def load_yaml(text: str, *, loc: tuple[str | int, ...] = (), error: type[InvalidInput] = InvalidInput) -> Any:
    """YAML/JSON text as plain data (dict, list, str, int, float, bool, None), or ``error`` naming the line.

    ``loc`` is the path of the text in the request (``("text",)`` for the web page's box).
    """
    if len(text) > MAX_YAML_BYTES:
        msg = f"{len(text)} characters; at most {MAX_YAML_BYTES} (MAX_YAML_BYTES)"
        raise error(detail=f"the text is too long: {msg}", errors=[FieldError(loc, msg, "too_long")])
    loader = BoundedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        check_node(root, loader)
        return loader.construct_document(root)
    except _Refused as exc:
        raise _error(error, loc, exc.msg, exc.mark, "yaml_refused") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise _error(error, loc, problem, getattr(exc, "problem_mark", None), "yaml_syntax") from None
    finally:
        loader.dispose()


def _error(error: type[InvalidInput], loc: tuple[str | int, ...], problem: str, mark: Any, kind: str) -> InvalidInput:
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    msg = f"not valid YAML/JSON: {where}{problem}"
    return error(detail=msg, errors=[FieldError(loc, msg, kind)])
