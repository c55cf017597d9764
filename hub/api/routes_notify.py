"""Notification policies per project, each user's channel preferences, and the attempts
made for an alarm with the providers' answers.

A project's policy is read by anyone who reads the project and changed by its managers;
its channels must be configured (``api.notify.channels``). A user's preferences are set
by the user or by a manager of all the user's grants (as other account changes).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from hub.alarmdesk.policy import check_policy
from hub.api.authz import Principal, Tree
from hub.api.deps import Caller, Ctx, OrgTree, forbidden, invalid, not_found
from hub.api.routes_alarms import check_read
from hub.api.routes_users import _target
from hub.api.schemas import ERRORS, Strict
from hub.store.base import Node

router = APIRouter(prefix="/api", tags=["alarms"])

Clock = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                             description="HH:MM, the project's local time")]


class StepIn(Strict):
    delay: float = Field(ge=0, le=7 * 86400, description="s after the raise")
    channel: str = Field(min_length=1, max_length=64)
    recipients: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default=[], max_length=50, description="addresses on the channel, or user:NAME")
    role: str | None = Field(default=None, pattern="^(viewer|operator|manager|admin)$")


class QuietIn(Strict):
    start: Clock
    end: Clock


class RemindersIn(Strict):
    """Hazard reminders (隐患提醒) for the project's hazards with a deadline."""

    before: float | None = Field(default=None, ge=60, le=30 * 86400,
                                 description="one reminder this many s before the deadline")
    after: float | None = Field(default=None, ge=0, le=30 * 86400,
                                description="one reminder once overdue by this many s")
    repeat: float | None = Field(default=None, ge=3600, le=30 * 86400,
                                 description="then again every this many s while open")
    step: int = Field(default=0, ge=0, le=19,
                      description="whose step's channel and recipients get them (the "
                                  "hazard's responsible person too, if a user)")


class PolicyIn(Strict):
    steps: list[StepIn] = Field(min_length=1, max_length=20)
    repeat_interval: float | None = Field(default=None, ge=60, le=86400)
    quiet_hours: QuietIn | None = None
    utc_offset_minutes: int = Field(default=480, ge=-720, le=840)
    storm_limit: int = Field(default=5, ge=1, le=1000)
    storm_window: float = Field(default=300, ge=10, le=86400)
    hazard_reminders: RemindersIn | None = None


class PolicyOut(PolicyIn):
    project: str
    updated_by: str | None = None
    updated_ts: float | None = None


class ContactIn(Strict):
    channel: str = Field(min_length=1, max_length=64)
    address: str = Field(min_length=1, max_length=256)


class PreferencesIn(Strict):
    contacts: list[ContactIn] = Field(max_length=20, description="in order of preference")


class NotificationOut(BaseModel):
    id: int
    step: int
    channel: str
    recipient: str
    ts: float
    status: str
    answer: str
    attempts: int
    done_ts: float | None = None
    attempt_log: list[dict[str, Any]] = Field(
        default=[], description="every attempt: attempt, ts, outcome (error, sent, failed) "
                                "and the provider's answer")


def _project(caller: Principal, tree: Tree, project_id: int) -> Node:
    n = tree.nodes.get(project_id)
    if n is None or n.kind != "project" or not caller.can_read(tree, project_id):
        raise not_found("project")
    return n


@router.get("/projects/{project_id}/notification-policy", response_model=PolicyOut | None,
            responses=ERRORS)
async def get_policy(project_id: int, caller: Caller, tree: OrgTree, ctx: Ctx) -> Any:
    """The project's policy, or null (nobody is notified by the desk)."""
    n = _project(caller, tree, project_id)
    body = await ctx.run(ctx.store.policy, n.code)
    return PolicyOut(**body, project=n.code) if body else None


@router.put("/projects/{project_id}/notification-policy", response_model=PolicyOut,
            responses={**ERRORS, 422: {"description": "bad policy (an unknown channel, ...)"}})
async def put_policy(project_id: int, body: PolicyIn, caller: Caller, tree: OrgTree,
                     ctx: Ctx) -> PolicyOut:
    """Replace the project's policy (manager or above); applies to alarms raised from now."""
    n = _project(caller, tree, project_id)
    if not caller.can(tree, project_id, "manager"):
        raise forbidden("notification policies are set by the project's managers")
    data = body.model_dump()
    problems = check_policy(data, sorted(ctx.settings.notify.channels))
    if body.hazard_reminders is not None and body.hazard_reminders.step >= len(body.steps):
        problems.append(f"hazard_reminders.step: no step {body.hazard_reminders.step} "
                        f"(the policy has {len(body.steps)})")
    if problems:
        raise invalid("; ".join(problems), "body", "steps")
    await ctx.audit(caller.name, "alarm.policy_changed", n.code, {"policy": data})
    now = ctx.hub.clock.seconds()
    await ctx.run(ctx.store.set_policy, n.code, data, caller.name, now)
    ctx.desk.policy_changed(n.code)
    return PolicyOut(**data, project=n.code, updated_by=caller.name, updated_ts=now)


@router.delete("/projects/{project_id}/notification-policy", status_code=204,
               responses=ERRORS)
async def delete_policy(project_id: int, caller: Caller, tree: OrgTree, ctx: Ctx) -> None:
    n = _project(caller, tree, project_id)
    if not caller.can(tree, project_id, "manager"):
        raise forbidden("notification policies are set by the project's managers")
    await ctx.audit(caller.name, "alarm.policy_removed", n.code, {})
    await ctx.run(ctx.store.set_policy, n.code, None, caller.name, ctx.hub.clock.seconds())


@router.get("/users/{user_id}/notification-preferences", response_model=PreferencesIn,
            responses=ERRORS)
async def get_preferences(user_id: int, caller: Caller, tree: OrgTree, ctx: Ctx
                          ) -> PreferencesIn:
    user = await _target(caller, tree, ctx, user_id, manage=False)
    rows = await ctx.run(ctx.store.contacts, user.id)
    return PreferencesIn(contacts=[ContactIn(channel=c, address=a) for c, a in rows])


@router.put("/users/{user_id}/notification-preferences", response_model=PreferencesIn,
            responses=ERRORS)
async def put_preferences(user_id: int, body: PreferencesIn, caller: Caller, tree: OrgTree,
                          ctx: Ctx) -> PreferencesIn:
    """Where the user is reached, in order of preference: a step sends on its own channel
    if the user gave an address there, else on the user's first choice."""
    user = await _target(caller, tree, ctx, user_id, manage=caller.user_id != user_id)
    channels = ctx.settings.notify.channels
    for i, c in enumerate(body.contacts):
        if c.channel not in channels:
            raise invalid(f"no channel {c.channel!r} (configured: "
                          f"{', '.join(sorted(channels)) or 'none'})", "body", "contacts", i)
    await ctx.audit(caller.name, "user.notification_preferences", user.name,
                    {"channels": [c.channel for c in body.contacts]})
    await ctx.run(ctx.store.set_contacts, user.id,
                  [(c.channel, c.address) for c in body.contacts])
    return body


@router.get("/alarms/{alarm_id}/notifications", response_model=list[NotificationOut],
            responses=ERRORS)
async def alarm_notifications(alarm_id: Annotated[int, Path(ge=1, le=2**62)], caller: Caller,
                              tree: OrgTree, ctx: Ctx) -> list[NotificationOut]:
    """Every notification attempt for the alarm: channel, recipient, status, attempts and
    the provider's answer."""
    record = await ctx.run(ctx.store.alarm, alarm_id)
    if record is None:
        raise not_found("alarm")
    check_read(caller, tree, record.project, "alarm")
    return await _notifications(ctx, alarm_id)


async def _notifications(ctx: Any, key: int) -> list[NotificationOut]:
    out = []
    for n in await ctx.run(ctx.store.notifications, key):
        out.append(NotificationOut(**n, attempt_log=await ctx.run(ctx.store.notify_attempts,
                                                                  n["id"])))
    return out


@router.get("/hazards/{hazard_id}/notifications", response_model=list[NotificationOut],
            responses=ERRORS)
async def hazard_notifications(hazard_id: Annotated[int, Path(ge=1, le=2**62)],
                               caller: Caller, tree: OrgTree, ctx: Ctx
                               ) -> list[NotificationOut]:
    """The reminders sent about a hazard (step -1: before the deadline, -2: overdue, -3…:
    repeated), each attempt with the provider's answer."""
    h = await ctx.run(ctx.store.hazard, hazard_id)
    if h is None:
        raise not_found("hazard")
    check_read(caller, tree, h.project, "hazard")
    return await _notifications(ctx, -hazard_id)
