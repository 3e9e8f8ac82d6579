"""Helpers shared by the parsers: line handling, strict numbers, JSON loading, dataclass -> JSON.

Every parser reports what it cannot understand through :class:`ParseError` with the 1-based line
number and the line itself, so a nightly log line is enough to find the culprit in a recorded file.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from vdpalab.errors import ParseError

# A shell prompt such as "[root@c83g155 ~]# " or "root@tester03:~# " at the start of a pasted line.
PROMPT_RE = re.compile(r"^\s*(?:\[[^\]\n]*\][#$]|[\w.@-]+:[^\s#$]*[#$])\s?")
T = TypeVar("T")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")


@dataclasses.dataclass(frozen=True)
class Unparsed:
    """A line the parser kept without understanding it: its 1-based number and its text.

    Real output is messy (a new field, a warning on stderr, a pasted prompt, an elision): a parser
    extracts what it knows and keeps the rest here, so nothing is lost and nothing is guessed.
    """

    line: int
    text: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.text}"


def unparsed_of(result: Any) -> list[Unparsed]:
    """The ``unparsed`` lines of any parser result (an empty list for results without them)."""
    return list(getattr(result, "unparsed", None) or [])


def describe_unparsed(result: Any, limit: int = 20) -> list[str]:
    """Lines for a failure diagnostic: what the parser kept without understanding, numbered."""
    kept = unparsed_of(result)
    out = [f"  {u}" for u in kept[:limit]]
    if len(kept) > limit:
        out.append(f"  ({len(kept) - limit} more lines not understood)")
    return ([f"{len(kept)} line(s) not understood by the parser:", *out]) if kept else []


_ELISION_RE = re.compile(r"^\s*(?:\.{3,}|…|\[\.\.\.\]|<snip>|\[snip\]|<\.\.\.>)\s*$", re.IGNORECASE)


def is_elision(line: str) -> bool:
    """A line a person put where lines were cut from a paste ('...', '[...]', '<snip>')."""
    return bool(_ELISION_RE.match(line))


def is_noise(line: str) -> bool:
    """A line a person added to a paste, never the tool's: an elision or a shell prompt."""
    return is_elision(line) or bool(PROMPT_RE.match(line)) or line.lstrip().startswith("$ ")


class Keeper:
    """Collects the lines a parser does not understand, with their numbers.

    ``with keep.line(n, text): ...`` runs one line's parsing; a ParseError there keeps the line in
    ``unparsed`` instead. When the text ends mid-line (no final newline) and the failing line is the
    last one, it stays an error: the paste is cut where a value must follow.
    """

    def __init__(self, lines: list[tuple[int, str]], text: str) -> None:
        self.last = lines[-1][0] if lines else 0
        self.cut = not normalize(text).rstrip(" \t").endswith("\n")
        self.unparsed: list[Unparsed] = []

    @contextmanager
    def line(self, line_no: int, line: str) -> Iterator[None]:
        try:
            yield
        except ParseError:
            if self.cut and line_no == self.last and not is_noise(line):
                raise
            self.unparsed.append(Unparsed(line_no, line))

    def keep(self, line_no: int, line: str) -> None:
        self.unparsed.append(Unparsed(line_no, line))


def blocks(kind: str, lines: list[tuple[int, str]], keep: Keeper, start: Callable[[int, str], T],
           detail: Callable[[T, int, str], None], what: str) -> None:
    """Output in blocks (devlink, vdpa): a line at column 0 starts a record, the indented lines below are its details.

    ``start`` reads a first line and returns the record its details go to; ``detail`` reads one indented line into
    it. A line either cannot read (or a detail before any first line) is kept in ``keep``.
    """
    current: T | None = None
    for line_no, line in lines:
        with keep.line(line_no, line):
            if not line[:1].isspace():
                current = start(line_no, line)
            elif current is None:
                raise ParseError(kind, f"detail before any {what}", line_no, line)
            else:
                detail(current, line_no, line)


def nothing_understood(kind: str, found: Any, keep: Keeper) -> None:
    """A text of which no line was understood is not this tool's output: ParseError at its first line."""
    if not found and keep.unparsed:
        first = keep.unparsed[0]
        raise ParseError(kind, "no line of this text is this tool's output", first.line, first.text)


def normalize(text: str) -> str:
    """Drop a byte-order mark and turn CRLF/CR line ends into LF; the rest is left alone."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def numbered(text: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line) for every line, without the line end."""
    yield from enumerate(text.split("\n"), start=1)


def content_lines(kind: str, text: str) -> list[tuple[int, str]]:
    """Numbered non-blank lines; an input with none is an error (an empty paste is never a result)."""
    lines = [(n, ln) for n, ln in numbered(normalize(text)) if ln.strip()]
    if not lines:
        raise ParseError(kind, "empty input")
    return lines


def to_int(kind: str, token: str, line_no: int | None, line: str | None, what: str = "number") -> int:
    """A decimal integer, or ParseError naming the line."""
    t = token.strip()
    if not re.fullmatch(r"[+-]?\d+", t):
        raise ParseError(kind, f"{what} {t!r} is not an integer", line_no, line)
    return int(t)


def to_counter(kind: str, token: str, line_no: int | None, line: str | None, what: str = "counter") -> int | None:
    """A counter: an integer, or None for OVS's '?' (unknown is not zero)."""
    if token.strip() == "?":
        return None
    return to_int(kind, token, line_no, line, what)


def to_bool_word(kind: str, token: str, line_no: int | None, line: str | None, what: str = "flag") -> bool:
    """on/off, yes/no, true/false as printed by ethtool, iproute2 and friends."""
    t = token.strip().lower()
    if t in ("on", "yes", "true"):
        return True
    if t in ("off", "no", "false"):
        return False
    raise ParseError(kind, f"{what} {token!r} is neither on/off, yes/no nor true/false", line_no, line)


def key_values(kind: str, words: list[str], line_no: int, line: str) -> dict[str, str]:
    """iproute2's ``key value key value ...`` (devlink, vdpa): a key without its value or a key twice is an error."""
    if len(words) % 2:
        raise ParseError(kind, f"key {words[-1]!r} without a value (output cut?)", line_no, line)
    out: dict[str, str] = {}
    for k, v in zip(words[::2], words[1::2], strict=True):
        if k in out:
            raise ParseError(kind, f"{k} twice", line_no, line)
        out[k] = v
    return out


def word_int(kind: str, v: str | None, what: str, line_no: int | None, line: str | None) -> int | None:
    """An unsigned decimal word of iproute2's text output (None when the key is absent)."""
    if v is None:
        return None
    if not v.isdigit():
        raise ParseError(kind, f"{what} {v!r} is not a number (output cut?)", line_no, line)
    return int(v)


def word_bool(kind: str, v: str | None, what: str, line_no: int | None, line: str | None) -> bool | None:
    """iproute2's ``true``/``false`` word (None when the key is absent)."""
    if v is None:
        return None
    if v not in ("true", "false"):
        raise ParseError(kind, f"{what} {v!r} is not true/false (output cut?)", line_no, line)
    return v == "true"


def check_mac(kind: str, token: str, line_no: int | None, line: str | None) -> str:
    """A colon-separated 6-byte MAC address (a paste cut inside one is caught here)."""
    if not _MAC_RE.match(token):
        raise ParseError(kind, f"{token!r} is not a MAC address", line_no, line)
    return token.lower()


def _line_of_offset(text: str, pos: int) -> tuple[int, str]:
    line_no = text.count("\n", 0, pos) + 1
    return line_no, text.split("\n")[line_no - 1]


def load_json(kind: str, text: str, *, keep_duplicates: bool = False) -> Any:
    """json.loads with the error turned into ParseError at the right line.

    ``keep_duplicates`` makes every object a list of (key, value) pairs so that outputs which repeat
    a key (iproute2 vdpa vstats prints "name"/"value" pairs) lose nothing.
    """
    hook: Callable[[list[tuple[str, Any]]], Any] | None = (lambda pairs: _Pairs(pairs)) if keep_duplicates else None
    try:
        return json.loads(text, object_pairs_hook=hook) if hook else json.loads(text)
    except json.JSONDecodeError as exc:
        line_no, line = _line_of_offset(text, exc.pos)
        raise ParseError(kind, f"not valid JSON ({exc.msg})", line_no, line) from None
    except RecursionError:
        raise ParseError(kind, "JSON nested too deeply") from None


def json_section(kind: str, text: str, *keys: str, keep_duplicates: bool = False) -> dict[str, Any]:
    """The object under the first of ``keys`` present in a top-level JSON object (iproute2's ``{"dev": {...}}``).

    ``keep_duplicates``: the section's (name, body) pairs as a dict whose bodies keep their repeated keys.
    """
    doc = load_json(kind, text, keep_duplicates=keep_duplicates)
    if keep_duplicates:
        if not is_pairs(doc):
            raise ParseError(kind, "top level: expected an object")
        top = dict(doc)
    else:
        top = expect_type(kind, doc, dict, "top level")
    for k in keys:
        if k in top:
            section = top[k]
            if keep_duplicates:
                if not is_pairs(section):
                    raise ParseError(kind, f"{k}: expected an object")
                return {name: body for name, body in section}
            return expect_type(kind, section, dict, k)
    raise ParseError(kind, f"JSON has none of the keys {list(keys)}")


class _Pairs(list):
    """A JSON object kept as its ordered (key, value) pairs (duplicates preserved)."""


def is_pairs(value: Any) -> bool:
    return isinstance(value, _Pairs)


def pairs_to_dict(value: Any) -> Any:
    """Turn kept pairs back into plain dicts (last duplicate wins), recursively."""
    if isinstance(value, _Pairs):
        return {k: pairs_to_dict(v) for k, v in value}
    if isinstance(value, list):
        return [pairs_to_dict(v) for v in value]
    return value


def looks_like_json(text: str) -> bool:
    s = text.lstrip()
    return s.startswith("{") or s.startswith("[")


def expect_type(kind: str, value: Any, typ: type | tuple[type, ...], what: str) -> Any:
    """A JSON value of the expected shape, or ParseError (no line: JSON was valid, its content was not)."""
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ParseError(kind, f"{what}: expected {getattr(typ, '__name__', typ)}, got {type(value).__name__}")
    return value


def json_objects(kind: str, value: Any, what: str, item: str | None = None) -> list[tuple[int, dict[str, Any]]]:
    """A JSON list of objects, each with its index; errors name the list ``what`` and an item ``ITEM[i]``
    (``item`` defaults to ``what``; ``""`` names the items of a top-level list ``[i]``)."""
    prefix = what if item is None else item
    items = expect_type(kind, value, list, what)
    return [(i, expect_type(kind, v, dict, f"{prefix}[{i}]")) for i, v in enumerate(items)]


def json_int(kind: str, value: Any, what: str) -> int | None:
    """An integer field of a JSON output (None when absent)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParseError(kind, f"{what}: expected an integer, got {value!r}")
    return value


def json_num(kind: str, value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(kind, f"{what}: expected a number, got {value!r}")
    return float(value)


def json_str(kind: str, value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParseError(kind, f"{what}: expected a string, got {value!r}")
    return value


def json_bool(kind: str, value: Any, what: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ParseError(kind, f"{what}: expected true/false, got {value!r}")
    return value


def split_top(text: str, sep: str = ",", opens: str = "([{", closes: str = ")]}") -> list[str]:
    """Split on ``sep`` outside brackets and double quotes; None-safe for nested OVS flow syntax."""
    out: list[str] = []
    depth = 0
    quote = False
    start = 0
    i = 0
    n = len(text)
    ls = len(sep)
    while i < n:
        c = text[i]
        if c == '"':
            quote = not quote
        elif not quote:
            if c in opens:
                depth += 1
            elif c in closes:
                depth -= 1
            elif depth == 0 and text.startswith(sep, i):
                out.append(text[start:i])
                i += ls
                start = i
                continue
        i += 1
    out.append(text[start:])
    return out


def balanced(text: str) -> bool:
    """True when (), [] and {} pair up outside double quotes."""
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    quote = False
    for c in text:
        if c == '"':
            quote = not quote
        elif quote:
            continue
        elif c in "([{":
            stack.append(c)
        elif c in ")]}" and (not stack or stack.pop() != pairs[c]):
            return False
    return not stack and not quote


def jsonable(obj: Any, exclude: Iterable[str] = ()) -> Any:
    """dataclasses.asdict for the JSON of ``vdpalab parse``: tuples become lists, ``exclude`` drops fields."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        skip = set(exclude)
        out = {}
        for f in dataclasses.fields(obj):
            if f.name in skip or f.metadata.get("json") is False:
                continue
            out[f.metadata.get("json_name", f.name)] = jsonable(getattr(obj, f.name))
        return out
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def to_json(obj: Any) -> Any:
    """The default JSON view of a parser's result."""
    return jsonable(obj)
