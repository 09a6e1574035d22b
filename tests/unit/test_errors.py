"""`service.http.errors`: its drawn tree names every error the service answers with."""

from __future__ import annotations

import re

import pytest

import service.app  # noqa: F401 - imports every route module, so every `ApiError` is defined
from service.http import errors
from service.http.errors import EXCEPTION_HANDLERS, ApiError


def subclasses(cls: type[ApiError]) -> list[type[ApiError]]:
    """`cls`'s subclasses, theirs too, by name."""
    found = {sub for direct in cls.__subclasses__() for sub in (direct, *subclasses(direct))}
    return sorted(found, key=lambda sub: sub.__name__)


def drawn(name: str) -> bool:
    """True when `name` begins a line of the module docstring (as a branch of the tree or not)."""
    doc = errors.__doc__ or ""
    return re.search(rf"^\s*(?:[├└]── )?{name}\b", doc, re.MULTILINE) is not None


class TestTree:
    @pytest.mark.parametrize("error", subclasses(ApiError), ids=lambda e: e.__name__)
    def test_every_api_error_is_drawn(self, error: type[ApiError]) -> None:
        """Each `ApiError` subclass, wherever defined, has its branch in the tree."""
        assert drawn(error.__name__)

    @pytest.mark.parametrize("error", list(EXCEPTION_HANDLERS), ids=lambda e: e.__name__)
    def test_every_mapped_error_is_listed(self, error: type[Exception]) -> None:
        """Each exception the table maps to a response is listed with its answer."""
        assert drawn(error.__name__)
