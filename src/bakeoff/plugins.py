"""One plugin mechanism for providers, suites and scorers: pluggy hooks loaded from entry points.

A plugin is a module (or object) with any of the hook implementations below, declared in its
package's metadata under the `bakeoff` entry-point group::

    [project.entry-points.bakeoff]
    myplugin = "my_package.bakeoff_plugin"

and in that module::

    from bakeoff.plugins import hookimpl

    @hookimpl
    def register_suites(register):
        register(MySuite())
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("bakeoff")
hookimpl = pluggy.HookimplMarker("bakeoff")


class HookSpecs:
    @hookspec
    def register_providers(self, register: Callable[[type], None]) -> None:
        """Register provider classes (subclasses of `bakeoff.providers.Provider`)."""

    @hookspec
    def register_suites(self, register: Callable[[Any], None]) -> None:
        """Register suite instances (see `bakeoff.suites.Suite`)."""

    @hookspec
    def register_scorers(self, register: Callable[[Any], None]) -> None:
        """Register scorer instances (see `bakeoff.suites.Scorer`)."""


class _Builtins:
    @hookimpl
    def register_providers(self, register: Callable[[type], None]) -> None:
        from bakeoff.providers import (
            FakeProvider,
            LocalProvider,
            OpenRouterProvider,
            Provider,
            ProxyProvider,
        )

        for cls in (Provider, OpenRouterProvider, FakeProvider, LocalProvider, ProxyProvider):
            register(cls)

    @hookimpl
    def register_suites(self, register: Callable[[Any], None]) -> None:
        from bakeoff.suites import Arith
        from bakeoff.suites.code import CodeSuite
        from bakeoff.suites.fidelity import FidelitySuite
        from bakeoff.suites.instructions import InstructionsSuite
        from bakeoff.suites.long_context import LongContextSuite
        from bakeoff.suites.long_output import LongOutputSuite
        from bakeoff.suites.math import MathSuite
        from bakeoff.suites.multilingual import MultilingualSuite
        from bakeoff.suites.structured import StructuredSuite
        from bakeoff.suites.tools import ToolsSuite

        for suite in (
            Arith(),
            MathSuite(),
            InstructionsSuite(),
            ToolsSuite(),
            CodeSuite(),
            LongContextSuite(),
            LongOutputSuite(),
            StructuredSuite(),
            MultilingualSuite(),
            FidelitySuite("greedy"),
            FidelitySuite("sampled"),
        ):
            register(suite)

    @hookimpl
    def register_scorers(self, register: Callable[[Any], None]) -> None:
        from bakeoff.suites import ExactMatch, NumericMatch

        register(ExactMatch())
        register(NumericMatch())


@cache
def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("bakeoff")
    pm.add_hookspecs(HookSpecs)
    pm.register(_Builtins(), name="bakeoff-builtins")
    pm.load_setuptools_entrypoints("bakeoff")
    return pm


def _collect(hook: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def register(obj: Any) -> None:
        found[obj.name] = obj

    getattr(plugin_manager().hook, hook)(register=register)
    return found


def providers() -> dict[str, type]:
    return _collect("register_providers")


@cache
def _suites() -> dict[str, Any]:
    return _collect("register_suites")


def suites() -> dict[str, Any]:
    """Registered suites by name (instances made once per process)."""
    return dict(_suites())


def scorers() -> dict[str, Any]:
    return _collect("register_scorers")


class UnknownPluginError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def get_suite(name: str) -> Any:
    found = suites()
    if name not in found:
        raise UnknownPluginError(f"unknown suite {name!r}; available: {', '.join(sorted(found))}")
    return found[name]


def get_provider(name: str) -> type:
    found = providers()
    if name not in found:
        raise UnknownPluginError(
            f"unknown provider {name!r}; available: {', '.join(sorted(found))}"
        )
    return found[name]
