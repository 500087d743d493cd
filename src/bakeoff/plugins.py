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
from pathlib import Path
from typing import Any

import pluggy

from bakeoff.lineups import FieldProblems, Lineup, load_lineup
from bakeoff.suites import Suite

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
            PRESETS,
            FakeProvider,
            LocalProvider,
            OpenRouterProvider,
            Provider,
            ProxyProvider,
        )

        builtins: list[type[Provider]] = [Provider, OpenRouterProvider, *PRESETS]
        for cls in (*builtins, FakeProvider, LocalProvider, ProxyProvider):
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
def _suites() -> dict[str, Suite]:
    return _collect("register_suites")


def suites() -> dict[str, Suite]:
    """Registered suites by name (instances made once per process)."""
    return dict(_suites())


def scorers() -> dict[str, Any]:
    return _collect("register_scorers")


def resolve_lineup(lineup: Lineup) -> Lineup:
    """The lineup as its providers complete it: each endpoint's preset defaults filled in (base
    URL, key variable, engine, neutral sampler fields). Raises `FieldProblems` naming the field of
    each endpoint whose provider is unknown or that lacks what its provider needs."""
    found = providers()
    problems: list[tuple[tuple[str | int, ...], str]] = []
    endpoints = []
    for i, ep in enumerate(lineup.endpoints):
        cls: Any = found.get(ep.provider)
        if cls is None:
            problems.append(
                (
                    ("endpoints", i, "provider"),
                    f"unknown provider {ep.provider!r}; available: {', '.join(sorted(found))}",
                )
            )
            endpoints.append(ep)
            continue
        resolved, problem = cls.resolve(ep)
        if problem:
            problems.append((("endpoints", i, "base_url"), problem))
        endpoints.append(resolved)
    if problems:
        raise FieldProblems(problems)
    if all(a is b for a, b in zip(endpoints, lineup.endpoints, strict=True)):
        return lineup
    return lineup.model_copy(update={"endpoints": endpoints})


def load(path: str | Path) -> Lineup:
    """`load_lineup()` with the providers' defaults filled in (`resolve_lineup`): what every
    command loads. Errors name the file, line and field."""
    return load_lineup(path, resolve=resolve_lineup)


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
