"""Example bodies for the OpenAPI document, attached to the models they illustrate."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict


def examples(
    *documents: dict[str, Any], extra: Literal["allow", "forbid", "ignore"] | None = None
) -> ConfigDict:
    """A model config whose JSON schema lists ``documents`` as examples (and sets ``extra``)."""
    config = ConfigDict(json_schema_extra={"examples": list(documents)})
    if extra is not None:
        config["extra"] = extra
    return config
