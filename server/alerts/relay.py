"""Outbox workers: one per channel, so a slow or failing channel never holds up another.

- console: the alert as it stands, through the fan-out to every process's consoles
  and to the user's phones;
- push: FCM to officers near the alert and the user's emergency contacts;
- cad: the EIDO object to each CAD endpoint (a worker each), signed, until it answers 2xx.

The workers themselves (leasing, renewing, recording) are `server.delivery`'s.
"""

import asyncio
import logging
import uuid
from datetime import datetime

import msgspec
import sqlalchemy as sa
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier import eido
from notifier.cad import CadChannel
from notifier.fcm import FcmChannel
from server.alerts import outbox
from server.alerts import view as alertview
from server.core import db, keys
from server.core.config import Settings
from server.alerts.delivery import Expander, Worker
from server.alerts.fanout import Fanout
from server.core.tables import contacts, devices, push_tokens, staff, users
from server.core.tasks import OwnedTask, cancel_and_wait

log = logging.getLogger(__name__)

ALL_CHANNELS = (outbox.CONSOLE, outbox.PUSH, outbox.CAD)


class Relay:
    def __init__(self, *, engine: AsyncEngine, redis: Redis, settings: Settings, fanout: Fanout,
                 delivers: bool = True):
        """`delivers` False (the phones role): this process runs no outbox workers; what it
        commits to the outbox wakes the workers of the processes that do, through Redis."""
        self.delivers = delivers
        self._engine = engine
        self._redis = redis
        self._settings = settings
        self._fanout = fanout
        self._fcm = (FcmChannel(project_id=settings.fcm_project_id, timeout_s=settings.fcm_timeout_s,
                                credentials_file=settings.fcm_credentials_file, endpoint=settings.fcm_endpoint,
                                access_token=settings.fcm_access_token)
                     if settings.fcm_project_id and delivers else None)
        self._cad = (CadChannel(secret=settings.cad_secret.encode(), timeout_s=settings.cad_timeout_s)
                     if settings.cad_endpoints and delivers else None)
        self._rushing: set[asyncio.Task] = set()
        # A process works only the channels (and CAD endpoints) it is configured for: one that
        # cannot deliver a row must leave it to a process that can, never mark it done.
        self.workers = {} if not delivers else {
            outbox.CONSOLE: Worker(channel=outbox.CONSOLE, engine=engine, settings=settings, deliver=self._consoles)}
        if self._fcm is not None:
            self.workers[outbox.PUSH] = Worker(channel=outbox.PUSH, engine=engine, settings=settings,
                                               deliver=self._push)
        # One worker per CAD endpoint: a dead endpoint delays nobody else's posts.
        for index, url in enumerate(dict.fromkeys(settings.cad_endpoints) if delivers else ()):
            self.workers[f"cad-{index}"] = Worker(channel=outbox.CAD, engine=engine, settings=settings,
                                                  deliver=self._cad_post, targets=[url], name=f"cad-{index}")
        self.expander = (Expander(engine=engine, targets=list(dict.fromkeys(settings.cad_endpoints)),
                                  workers=[worker for worker in self.workers.values() if worker.channel == outbox.CAD],
                                  poll_interval_s=settings.outbox_poll_interval_s)
                         if self._cad is not None else None)

    @property
    def fcm(self) -> FcmChannel | None:
        """This process's FCM channel (None without FCM): the trips' pushes go through it too."""
        return self._fcm

    @property
    def tasks(self) -> list[OwnedTask]:
        return [*self.workers.values(), *([self.expander] if self.expander is not None else [])]

    def start(self) -> None:
        for task in self.tasks:
            task.start()

    def kick(self) -> None:
        """Something was committed to the outbox: deliver it now rather than at the next poll."""
        self.woken(ALL_CHANNELS)
        if not self.delivers:
            self._wake_others(ALL_CHANNELS)

    def woken(self, channels) -> None:
        """Another process committed rows of these channels (`Fanout.on_outbox_due`)."""
        for task in self.tasks:
            if task.channel in channels:
                task.kick()

    def opened(self, raised) -> None:
        """A new alert was committed: take it to the consoles at once, without waiting for the
        console worker's lease; the worker remains the fallback (a repeat is dropped by event id)."""
        others = [channel for channel in ALL_CHANNELS if channel != outbox.CONSOLE]
        self.woken(others)
        if not self.delivers:
            self._wake_others(others)
        if raised.view is None:
            self._kick_console()
            return
        task = asyncio.create_task(self._rush(raised.view, raised.event_id), name="relay-rush")
        self._rushing.add(task)
        task.add_done_callback(self._rushing.discard)

    async def _rush(self, view: alertview.View, event_id: uuid.UUID) -> None:
        """The view came back with the SOS commit, so the consoles of this process have it at
        once. Marking the event done is on the main pool: the SOS path's own pool is kept for
        committing SOS (a busy loop makes every connection's use slow)."""
        alert_id = view.alert["alert_id"]
        try:
            published = await self._fanout.publish_alert(view, kind="opened", event_id=str(event_id))
            if published and not self.delivers:
                # A phones process has no consoles, and Redis counts its own subscription as a
                # receiver: a publish it made proves nothing while the alerts process is down.
                # The consoles' worker there delivers it too (consoles drop the repeat by event id).
                self._kick_console()
                return
            if published:
                async with self._engine.begin() as connection:
                    await outbox.complete_event(connection=connection, event_id=event_id, channel=outbox.CONSOLE)
                return
        except db.STORAGE_ERRORS as error:
            log.warning("alert %s left to the console worker: %s", alert_id, db.describe(error))
        self._kick_console()

    def _kick_console(self) -> None:
        if outbox.CONSOLE in self.workers:
            self.workers[outbox.CONSOLE].kick()
        else:
            self._wake_others([outbox.CONSOLE])

    def _wake_others(self, channels) -> None:
        self._fanout.wake_outbox(channels)

    async def close(self) -> None:
        await cancel_and_wait(*self._rushing)
        for task in self.tasks:
            await task.close()
        if self._fcm is not None:
            await self._fcm.close()
        if self._cad is not None:
            await self._cad.close()

    async def _views(self, rows: list[outbox.Row], retry: dict[float, list[int]]) -> dict[uuid.UUID, alertview.View]:
        """The views of the rows' alerts. A row whose alert cannot be shown goes to `retry` with
        its back-off: it never holds up the rows of other alerts."""
        async with db.autocommit(self._engine) as connection:
            views = await alertview.load(connection=connection, track_points=self._settings.alert_track_points,
                                         alert_ids=list({row.alert_id for row in rows}))
        found = {uuid.UUID(view.alert["alert_id"]): view for view in views}
        for row in rows:
            if row.alert_id not in found:
                retry.setdefault(outbox.backoff_s(row.attempts), []).append(row.id)
        return found

    async def _consoles(self, rows: list[outbox.Row]):
        done, retry = [], {}
        views = await self._views(rows, retry)
        for row in rows:
            if row.alert_id not in views:
                continue
            relayed = await self._fanout.publish_alert(views[row.alert_id], kind=row.kind, event_id=str(row.event_id))
            # Not in Redis: this process's consoles have it; the others get it on the retry.
            if relayed:
                done.append(row.id)
            else:
                retry.setdefault(outbox.backoff_s(1), []).append(row.id)
        return done, retry

    async def _push(self, rows: list[outbox.Row]):
        done, retry = [], {}
        views = await self._views(rows, retry)
        for row in rows:
            view = views.get(row.alert_id)
            if view is None:
                continue
            try:
                tokens = await self._push_tokens(view)
            except (RedisError, OSError, TimeoutError) as error:
                log.warning("push: officers' positions unavailable (%s)", db.describe(error))
                retry.setdefault(outbox.backoff_s(row.attempts), []).append(row.id)
                continue
            data = {"type": "sos", "kind": row.kind, "alert_id": view.alert["alert_id"],
                    "precinct": (view.alert["precinct"] or {}).get("id", "")}
            result = await self._fcm.send(tokens=sorted(set(tokens)), data=data)
            if result.dead_tokens:
                await self._forget(result.dead_tokens)
            if result.retry_tokens and row.attempts < 5:
                retry.setdefault(result.retry_after_s, []).append(row.id)
            else:
                done.append(row.id)
        return done, retry

    async def _push_tokens(self, view: alertview.View) -> list[str]:
        """Officers within the configured radius of the alert, and the user's contacts who have the app."""
        location = view.alert["location"]
        officer_ids = []
        if location is not None:
            async with asyncio.timeout(1.0):
                officer_ids = await self._redis.geosearch(
                    keys.OFFICERS_GEO, longitude=location["lon"], latitude=location["lat"],
                    radius=self._settings.officer_radius_m, unit="m")
        async with db.autocommit(self._engine) as connection:
            tokens = [] if not officer_ids else list(await connection.scalars(
                sa.select(staff.c.fcm_token).where(
                    staff.c.staff_id.in_([uuid.UUID(member.decode()) for member in officer_ids]),
                    staff.c.fcm_token.is_not(None))))
            tokens += await contact_tokens(connection=connection, user_id=uuid.UUID(view.user_id))
        return tokens

    async def _forget(self, dead: list[str]) -> None:
        await forget_tokens(engine=self._engine, dead=dead)

    async def _cad_post(self, rows: list[outbox.Row]):
        """Post to one endpoint (a worker's rows share a target), each post bounded by the CAD
        timeout. After a failure the rest wait with it: a dead endpoint costs one timeout a round."""
        done, retry = [], {}
        views = await self._views(rows, retry)
        for index, row in enumerate(rows):
            if row.alert_id not in views:
                continue
            body = msgspec.json.encode(eido.eido(facts(views[row.alert_id]), agency_id=self._settings.cad_agency_id,
                                                 issuing_element=self._settings.issuing_element))
            try:
                async with asyncio.timeout(self._settings.cad_timeout_s):
                    posted = await self._cad.post(url=row.target, event_id=str(row.event_id), kind=row.kind,
                                                  body=body)
            except TimeoutError:
                posted = False
            if posted:
                done.append(row.id)
                continue
            retry.setdefault(outbox.backoff_s(row.attempts), []).append(row.id)
            later = [other.id for other in rows[index + 1:] if other.alert_id in views]
            if later:
                retry.setdefault(outbox.backoff_s(1), []).extend(later)
            log.warning("CAD endpoint %d failed; %d posts wait for it", self._endpoint_index(row.target),
                        1 + len(later))
            break
        return done, retry

    def _endpoint_index(self, url: str | None) -> int:
        # The index, not the URL: an endpoint URL may carry a credential.
        endpoints = list(dict.fromkeys(self._settings.cad_endpoints))
        return endpoints.index(url) if url in endpoints else -1


async def contact_tokens(*, connection, user_id: uuid.UUID) -> list[str]:
    """The FCM tokens of the user's emergency contacts who have the app: contacts matched to
    users by phone number, and those users' phones' push tokens."""
    return list(await connection.scalars(
        sa.select(push_tokens.c.fcm_token)
        .select_from(contacts.join(users, users.c.phone == contacts.c.phone)
                     .join(devices, devices.c.user_id == users.c.user_id).join(push_tokens))
        .where(contacts.c.user_id == user_id)))


async def forget_tokens(*, engine: AsyncEngine, dead: list[str]) -> None:
    """Forget the tokens FCM called unregistered or invalid (phones' and officers')."""
    async with engine.begin() as connection:
        await connection.execute(sa.delete(push_tokens).where(push_tokens.c.fcm_token.in_(dead)))
        await connection.execute(staff.update().where(staff.c.fcm_token.in_(dead)).values(fcm_token=None))
    log.info("push: forgot %d tokens FCM called unregistered or invalid", len(dead))


def facts(view: alertview.View) -> eido.Facts:
    """The EIDO's facts from the console's view of an alert."""
    alert, location = view.alert, view.alert["location"] or {}
    precinct = alert["precinct"] or {}
    return eido.Facts(
        alert_id=alert["alert_id"], status=alert["status"], duress=alert["duress"],
        opened_at=datetime.fromisoformat(alert["opened_at"]), updated_at=datetime.fromisoformat(alert["updated_at"]),
        user_id=alert["user"]["user_id"], user_name=alert["user"]["name"], user_phone=alert["user"]["phone"],
        precinct_id=precinct.get("id"), precinct_name=precinct.get("name"),
        lat=location.get("lat"), lon=location.get("lon"), accuracy_m=location.get("acc"),
        fix_ts=datetime.fromisoformat(location["ts"]) if location.get("ts") else None,
        quality=location.get("quality", "unknown"),
        notes=tuple(note["text"] for note in alert["notes"]),
        trip=None if alert["trip"] is None else trip_facts(alert["trip"]),
    )


def trip_facts(trip: dict) -> eido.TripFacts:
    """The EIDO's facts of the Alert's `trip`."""
    moment = lambda value: None if value is None else datetime.fromisoformat(value)  # noqa: E731
    vehicle, destination = trip["vehicle"] or {}, trip["destination"]
    return eido.TripFacts(
        trip_id=trip["trip_id"], kind=trip["kind"], status=trip["status"], started_at=moment(trip["started_at"]),
        plate=trip["plate"], driver_name=trip["driver_name"], make=vehicle.get("make"), colour=vehicle.get("colour"),
        destination=None if destination is None else (destination["lat"], destination["lon"]),
        eta=moment(trip["eta"]), expected_return=moment(trip["expected_return"]),
        planned_route_m=trip["planned_route_m"])
