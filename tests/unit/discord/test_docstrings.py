"""Every public name of the Discord adapter says what it is: it is a product of its own."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import shared.discord


def _modules() -> list[ModuleType]:
    return [
        importlib.import_module(f"shared.discord.{info.name}")
        for info in pkgutil.iter_modules(shared.discord.__path__)
    ]


def _undocumented(module: ModuleType) -> list[str]:
    missing = [] if module.__doc__ else [module.__name__]
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not obj.__doc__:
            missing.append(f"{module.__name__}.{name}")
        if not inspect.isclass(obj):
            continue
        for attr, value in vars(obj).items():
            if attr.startswith("_"):
                continue
            func = value.fget if isinstance(value, property) else value
            if isinstance(func, classmethod | staticmethod):
                func = func.__func__
            if inspect.isfunction(func) and not func.__doc__:
                missing.append(f"{module.__name__}.{name}.{attr}")
    return missing


def test_every_public_name_has_a_docstring() -> None:
    modules = _modules()
    assert len(modules) >= 10  # the walk found the adapter's modules
    missing = [name for module in modules for name in _undocumented(module)]
    assert missing == []


def test_the_check_notices_a_missing_docstring() -> None:
    module = ModuleType("shared.discord.example", "An example module.")

    def undocumented() -> None:
        pass

    undocumented.__module__ = module.__name__
    module.undocumented = undocumented  # type: ignore[attr-defined]
    assert _undocumented(module) == ["shared.discord.example.undocumented"]
