"""The base of every settings group: one way to read the environment and ``.env``.

Each group (Discord, LLM, delivery, bot, API, metrics) is a :class:`SettingsGroup`: a
pydantic-settings model whose fields are read from upper-cased variables (with the group's
prefix, or an explicit alias), from the process environment first and ``.env`` second.  The root
:func:`shared.settings.load_settings` builds every group the same way, so a variable behaves
identically whichever group owns it.  Problems are raised as :class:`SettingsError`, one line
per variable: what was wrong and how to fix it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Self, TypeVar

from pydantic import AliasChoices, AliasPath, BeforeValidator, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.errors import SettingsError

__all__ = [
    "ENV_SOURCES",
    "CommaSeparated",
    "JsonEncoded",
    "SettingsGroup",
    "drop_blank_values",
    "problem_line",
    "split_list",
]


#: A message that starts with the variable it is about (``BOT_SHARD_COUNT: not set, ...``).
_NAMED = re.compile(r"[A-Z][A-Z0-9_]*: ")


def split_list(value: Any) -> Any:
    """``"a, b,,c"`` → ``["a", "b", "c"]``; other values unchanged (for comma-separated lists)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


_T = TypeVar("_T")

#: A field read from one comma-separated variable: split with :func:`split_list`, then
#: validated as ``_T`` (``CommaSeparated[list[int]]``, ``CommaSeparated[frozenset[str]]``).
#: ``NoDecode`` keeps pydantic-settings from decoding the variable as JSON first.
CommaSeparated = Annotated[_T, NoDecode, BeforeValidator(split_list)]


def decode_json(value: Any) -> Any:
    """A variable's text decoded as JSON; other values unchanged.  A decoding error is a
    ``ValueError`` saying where the text breaks (a validation error like any other)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); give a JSON "
            'value, e.g. {"name": {...}}'
        ) from None


#: A field read from one JSON variable.  Decoded here rather than by pydantic-settings, whose
#: decoding error stops the whole group: every other bad variable went unreported with it.
JsonEncoded = Annotated[_T, NoDecode, BeforeValidator(decode_json)]


def problem_line(env: str, message: str, hints: Mapping[str, str]) -> str:
    """``VARIABLE: what was wrong; how to fix it`` from a validation message and the hints."""
    what = message.removeprefix("Value error, ")
    hint = hints.get(env)
    return f"{env}: {what}" + (f"; {hint}" if hint else "")


def drop_blank_values(data: Any) -> Any:
    """Leave out blank values: ``LLM_TEMPERATURE=`` in a ``.env`` template means "not set",
    in the root and every group alike (so an optional field needs no blank check of its own)."""
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
    return data


#: How every settings model (the groups and the root) reads its variables: the process
#: environment first and ``.env`` second, names case-insensitive, unknown variables ignored.
ENV_SOURCES = SettingsConfigDict(
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    case_sensitive=False,
    validate_default=True,
)


class SettingsGroup(BaseSettings):
    """A group of settings read from the environment and ``.env`` (see module docstring)."""

    model_config = SettingsConfigDict(**ENV_SOURCES, frozen=True)

    #: How to fix a variable, shown after what was wrong with it.
    hints: ClassVar[dict[str, str]] = {}

    def __init__(self, **values: Any) -> None:
        # Fields read from a differently named variable (``api_key`` from ``OPENAI_API_KEY``)
        # accept their field name too; as the alias it can never also come from a variable
        # named after the field (``API_KEY``), which ``populate_by_name`` would allow.
        for name, info in type(self).model_fields.items():
            if name in values and info.validation_alias is not None:
                values[type(self).env_name(name)] = values.pop(name)
        super().__init__(**values)

    @model_validator(mode="before")
    @classmethod
    def _drop_blank_values(cls, data: Any) -> Any:
        return drop_blank_values(data)

    @classmethod
    def env_name(cls, field: str) -> str:
        """The variable that sets ``field`` (its first alias, else prefix + upper-cased name)."""
        info = cls.model_fields.get(field)
        if info is None and field.upper() in cls.variables():
            return field.upper()  # validation errors name a field by the alias it was read from
        alias = info.validation_alias if info is not None else None
        if isinstance(alias, str):
            return alias.upper()
        if isinstance(alias, AliasChoices):
            first = alias.choices[0]
            if isinstance(first, str):
                return first.upper()
            if isinstance(first, AliasPath):
                return str(first.path[0]).upper()
        prefix = str(cls.model_config.get("env_prefix") or "")
        return f"{prefix}{field}".upper()

    @classmethod
    def variables(cls) -> list[str]:
        """Every variable this group reads (all aliases), upper-cased."""
        names: list[str] = []
        prefix = str(cls.model_config.get("env_prefix") or "")
        for field, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, str):
                names.append(alias.upper())
            elif isinstance(alias, AliasChoices):
                names.extend(str(c).upper() for c in alias.choices if isinstance(c, str))
            else:
                names.append(f"{prefix}{field}".upper())
        return names

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Read and validate; ``overrides`` (field names) win over the environment.

        Raises :class:`SettingsError` with one line per bad variable.
        """
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(cls.problems(exc)) from None

    @classmethod
    def problems(cls, exc: ValidationError) -> list[str]:
        """One line per error of ``exc``: ``VARIABLE: what was wrong; how to fix it``."""
        lines = []
        for error in exc.errors():
            loc = error["loc"]
            message = str(error["msg"])
            if not loc:
                # A rule across variables says which one to change: "VARIABLE: what".
                what = message.removeprefix("Value error, ")
                if _NAMED.match(what):
                    lines.append(what)
                    continue
            env = cls.env_name(str(loc[0])) if loc else cls.group_label()
            lines.append(problem_line(env, message, cls.hints))
        return lines

    @classmethod
    def group_label(cls) -> str:
        """How a problem spanning several variables of this group is labelled."""
        prefix = str(cls.model_config.get("env_prefix") or "").rstrip("_")
        return f"{prefix or cls.__name__.removesuffix('Settings').upper()}_SETTINGS"
