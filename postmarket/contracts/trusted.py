"""A contract built from values already validated, without validating them again.

The worker builds several contract objects per event from parts that are valid by
construction (a decoded prediction's fields, a position it assigned): pydantic's
``model_construct`` skips validation but still looks every field up by name and alias, one
call at a time, which cost more than the rest of building them. :func:`trusted` does only
what is left of its work then. Only for values that are valid: nothing checks them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

ModelT = TypeVar("ModelT", bound=BaseModel)


def trusted(
    model: type[ModelT], values: dict[str, Any], fields_set: frozenset[str] | None = None
) -> ModelT:
    """``model.model_construct(**values)`` for ``values`` that give every field of ``model``,
    in field order, each already valid: what model_construct leaves of its work then (it
    looks every field up by name and alias, one call at a time). ``fields_set``: the fields
    model_construct would count as set, when not all of them (a default filled in). For
    models without aliases, private attributes or post-init (see test_casefile_fast_paths).
    """
    built = model.__new__(model)
    _set_attribute(built, "__dict__", values)
    counted = values if fields_set is None else fields_set
    _set_attribute(built, "__pydantic_fields_set__", set(counted))
    _set_attribute(built, "__pydantic_extra__", None)
    _set_attribute(built, "__pydantic_private__", None)
    return built


_set_attribute = object.__setattr__
