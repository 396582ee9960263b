"""``ankang alarms``: list, acknowledge and resolve alarms."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from ankang.cli.common import ErrorExit, with_database

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    import psycopg

    from alerts import Alarm, RecipientStatus

T = TypeVar("T")

app = typer.Typer(help="List, acknowledge and resolve alarms.", no_args_is_help=True)


def _on_alarms(action: Callable[[psycopg.AsyncConnection[tuple[object, ...]]], Awaitable[T]]) -> T:
    """``action`` on the database: an unavailable database ends with exit code 1, refusals with 2."""
    from alerts import AlertsError, AlertsUnavailable

    errors: list[ErrorExit] = [(AlertsUnavailable, 1, ""), (AlertsError, 2, "")]
    return with_database(action, errors=errors)


@app.command("list")
def alarms_list(
    all_: Annotated[bool, typer.Option("--all", help="Include resolved alarms.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
) -> None:
    """Unresolved alarms, newest first."""
    from datetime import UTC

    from alerts import list_alarms

    found = _on_alarms(lambda conn: list_alarms(conn, include_resolved=all_, limit=limit))
    typer.echo(
        f"{'id':>6} {'priority':<8} {'type':<15} {'state':<12} {'count':>5} {'opened (UTC)':<20} subject"
    )
    for a in found:
        opened = a.opened_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(
            f"{a.id:>6} {a.priority:<8} {a.type:<15} {a.state:<12} {a.count:>5} {opened:<20} {a.subject}"
        )


@app.command("show")
def alarms_show(alarm_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """One alarm, and where each message about it stands (per recipient)."""
    from datetime import UTC

    from alerts import delivery_status, get_alarm

    async def both(
        conn: psycopg.AsyncConnection[tuple[object, ...]],
    ) -> tuple[Alarm, Sequence[RecipientStatus]]:
        return await get_alarm(conn, alarm_id), await delivery_status(conn, alarm_id)

    alarm, messages = _on_alarms(both)
    opened = alarm.opened_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    typer.echo(
        f"alarm {alarm.id}: {alarm.priority} {alarm.type} {alarm.state}, count {alarm.count}, "
        f"opened {opened} UTC, subject {alarm.subject}"
    )
    if alarm.acknowledged_by:
        typer.echo(f"acknowledged by {alarm.acknowledged_by}")
    if not messages:
        typer.echo("no messages")
    for m in messages:
        status = m.status
        if m.digest_status is not None:
            status = f"{m.status} into #{m.digest_id} ({m.digest_status})"
        line = f"#{m.notification_id:<6} {m.kind:<10} {m.role:<16} {m.contact:<20} {m.channel:<10} {status}"
        if m.attempts:
            line += f", {m.attempts} attempt(s)"
        if m.last_error and m.status != "sent":
            line += f": {m.last_error}"
        typer.echo(line)


@app.command("ack")
def alarms_ack(
    alarm_id: Annotated[int, typer.Argument(metavar="ID")],
    by: Annotated[str, typer.Option("--by", help="Who acknowledges.")],
    note: Annotated[str | None, typer.Option(help="At most 2000 characters.")] = None,
) -> None:
    """Acknowledge an open alarm."""
    from alerts import acknowledge

    alarm = _on_alarms(lambda conn: acknowledge(conn, alarm_id, by, "cli", note))
    typer.echo(f"alarm {alarm.id} acknowledged by {alarm.acknowledged_by}")


@app.command("resolve")
def alarms_resolve(
    alarm_id: Annotated[int, typer.Argument(metavar="ID")],
    by: Annotated[str, typer.Option("--by", help="Who resolves.")],
    resolution: Annotated[str, typer.Option(help="false_alarm, real_incident or test.")],
    note: Annotated[str | None, typer.Option(help="At most 2000 characters.")] = None,
) -> None:
    """Resolve an open or acknowledged alarm."""
    from alerts import resolve

    alarm = _on_alarms(lambda conn: resolve(conn, alarm_id, by, "cli", resolution, note))
    typer.echo(f"alarm {alarm.id} resolved ({alarm.resolution}) by {alarm.resolved_by}")
