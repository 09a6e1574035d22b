"""How the console shows the admin API's fields: a `Column` pairs a person's header ("Received")
with the API's key (`receivedAt`) and how its value reads (a `<time>`, yes/no, a shortened id,
milliseconds); also the list filter form, whose choices are drop-downs. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from markupsafe import Markup

from service.http.console.markup import (
    Viewer,
    attr,
    h,
    join,
    link,
    short_id,
    table,
    when,
    yes_no,
)

View = Mapping[str, Any]
Kind = Literal["text", "time", "flag", "id", "ms"]
SELECTED = Markup(" selected")
YES_NO = (("true", "yes"), ("false", "no"))


@dataclass(frozen=True, slots=True)
class Column:
    """One field: its header, the API key it comes from, and how its value reads."""

    label: str
    key: str
    kind: Kind = "text"


def shown(value: object, kind: Kind) -> object:
    """`value` as its kind reads to a person."""
    if kind == "time":
        return when(value if isinstance(value, str) else None)
    if kind == "flag":
        return yes_no(value)
    if kind == "id" and isinstance(value, str):
        return h('<span class="id" title="{}">{}</span>', value, short_id(value))
    if kind == "ms" and isinstance(value, int | float):
        return f"{value:,.1f} ms"
    return value


def cells(view: View, columns: Sequence[Column], **given: object) -> list[object]:
    """The values of `columns` in `view`, shown by kind, except those `given` ready-made."""
    return [given[c.key] if c.key in given else shown(view.get(c.key), c.kind) for c in columns]


def listing(
    columns: Sequence[Column], rows: Iterable[Sequence[object]], empty: str, extra: int = 0
) -> Markup:
    """A table under the columns' headers (and `extra` blank ones for buttons)."""
    return table([*(c.label for c in columns), *[""] * extra], rows, empty)


def fields(view: View, columns: Sequence[Column], **given: object) -> Markup:
    """A two-column table: each field's header and value."""
    values = cells(view, columns, **given)
    return table(("Field", "Value"), zip((c.label for c in columns), values, strict=True))


@dataclass(frozen=True, slots=True)
class Filter:
    """A list filter: the query parameter, its label, and its choices (a drop-down) as
    (value, shown) pairs, or none (a text field)."""

    name: str
    label: str
    choices: Sequence[tuple[str, str]] = ()


def choices(values: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """Choices shown as their values, underscores as spaces."""
    return tuple((v, v.replace("_", " ")) for v in values)


def _input(spec: Filter, value: str) -> Markup:
    if not spec.choices:
        return h(
            '<label>{} <input name="{}" value="{}"></label> ', spec.label, spec.name, attr(value)
        )
    options = join(
        h('<option value="{}"{}>{}</option>', v, SELECTED if v == value else "", label)
        for v, label in (("", "any"), *spec.choices)
    )
    return h('<label>{} <select name="{}">{}</select></label> ', spec.label, spec.name, options)


def filter_form(base: str, viewer: Viewer, *specs: Filter) -> Markup:
    """The GET form of a list's filters, keeping the values given, and a link to clear them."""
    inputs = join(_input(spec, viewer.filters.get(spec.name, "")) for spec in specs)
    form = '<form class="filters" method="get" action="{}">{} <button>Filter</button> {}</form>'
    return h(form, base, inputs, link(base, "clear"))
