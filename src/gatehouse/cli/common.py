"""What every verb shares: settings loading, one-line errors, running async services."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from gatehouse.errors import GatehouseError
from gatehouse.store.db.engine import is_database_outage
from gatehouse.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from gatehouse.context import Context

T = TypeVar("T")
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", markup=True)
    raise typer.Exit(code)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        for line in exc.lines:
            err.print(f"[red]config error:[/red] {line}", markup=True)
        raise typer.Exit(2) from None


def with_context(settings: Settings, work: Callable[["Context"], Awaitable[T]]) -> T:
    """Build the services, run `work`, close them; domain errors become one line."""
    from gatehouse.context import Context

    try:
        ctx = Context.build(settings)
    except SettingsError as exc:
        for line in exc.lines:
            err.print(f"[red]config error:[/red] {line}", markup=True)
        raise typer.Exit(2) from None

    async def runner() -> T:
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    return run_async(runner())


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except GatehouseError as exc:
        fail(exc.detail)
    except typer.Exit:
        raise
    except Exception as exc:
        if is_database_outage(exc):
            fail(f"cannot reach the database ({type(exc).__name__}); check DATABASE_URL")
        raise


def guard(main: Callable[[], Any]) -> None:
    """Top level: no traceback ever reaches the terminal."""
    try:
        main()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # the last resort; details stay out (they may hold secrets)
        if is_database_outage(exc):
            err.print(f"error: cannot reach the database ({type(exc).__name__}); check DATABASE_URL")
        else:
            err.print(f"error: unexpected {type(exc).__name__}; run with GATEHOUSE_LOG_LEVEL=debug "
                      "and report it")
        sys.exit(1)
