"""Skill templates: one Jinja2 template per family, runtime parts composed in from runtimes/.

The catalogue is read from the files themselves: each family template starts with an
`accel-template` header (family, version, tasks), and every file in runtimes/ is a runtime all
families compose with.
"""

from __future__ import annotations

import hashlib
import pprint
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATE_DIR = Path(__file__).resolve().parent
_HEADER = re.compile(r"\A\{#-? accel-template\n(?P<body>.*?)\n-?#\}", re.S)
_SAFE_LITERALS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    family: str
    version: str
    tasks: tuple[str, ...]
    runtimes: tuple[str, ...]
    path: Path


def py_literal(value: Any) -> str:
    """`value` as Python source that evaluates back to it and can run nothing.

    Only plain data (str, numbers, bools, None, and lists/tuples/dicts of them) is accepted: a model ref
    like `"); import os; #` becomes an inert string literal, never code.
    """

    def check(item: Any) -> None:
        if isinstance(item, dict):
            for key, val in item.items():
                check(key)
                check(val)
        elif isinstance(item, list | tuple):
            for val in item:
                check(val)
        elif not isinstance(item, _SAFE_LITERALS):
            raise TypeError(f"cannot embed {type(item).__name__} in generated code: plain data only")

    check(value)
    if isinstance(value, dict | list | tuple):
        return pprint.pformat(value, width=100, sort_dicts=False)
    return repr(value)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Python source, not HTML: values enter only through the `py` filter
    )
    env.filters["py"] = py_literal
    return env


@cache
def source_digest() -> str:
    """A hash of every template file: part of each skill's identity, so a template edited without a
    version bump still gives new skill ids, never a stale skill reused under the old one."""
    digest = hashlib.sha256()
    for path in sorted(TEMPLATE_DIR.rglob("*.py.j2")):
        digest.update(path.relative_to(TEMPLATE_DIR).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def runtimes() -> tuple[str, ...]:
    return tuple(sorted(p.name.removesuffix(".py.j2") for p in (TEMPLATE_DIR / "runtimes").glob("*.py.j2")))


def _parse(path: Path) -> TemplateInfo | None:
    match = _HEADER.match(path.read_text())
    if match is None:
        return None
    fields = dict(line.split(":", 1) for line in match["body"].splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    return TemplateInfo(
        name=path.name.removesuffix(".py.j2"),
        family=fields["family"],
        version=fields["version"],
        tasks=tuple(t.strip() for t in fields["tasks"].split(",") if t.strip()),
        runtimes=tuple(r.strip() for r in fields["runtimes"].split(",")) if "runtimes" in fields else runtimes(),
        path=path,
    )


@cache
def catalogue() -> dict[str, TemplateInfo]:
    """family -> its template, for every family template in this folder."""
    found = {}
    for path in sorted(TEMPLATE_DIR.glob("*.py.j2")):
        info = _parse(path)
        if info is not None:
            found[info.family] = info
    return found


def render(info: TemplateInfo, context: dict[str, Any]) -> str:
    return environment().get_template(info.path.name).render(**context)
