"""The OTA observations (/5/0/3, /5/0/5) that a failed request ended are renewed at the
device's next sign of life (a block it fetches, a notification, a step in its window), not
only at its next Update; a refusal is not asked again, and the renewals are bounded."""

from __future__ import annotations

from types import SimpleNamespace

from aiocoap import Code, Message
from twisted.internet import task

from plugins.transports.coap_lwm2m.ota import MAX_RENEWALS, OBSERVED, FirmwareDriver
from plugins.transports.coap_lwm2m.registration import Params, RegistrationTable

REMOTE = ("127.0.0.1", 5683)  # the table keeps addresses opaque


class Observations:
    def __init__(self) -> None:
        self.added: list[tuple[str, object, list]] = []

    def add(self, ctx, loop, device, remote, paths) -> None:
        self.added.append((device, remote, list(paths)))


class Metrics:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def inc(self, name, **labels) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


def make(reachable: bool = True):
    clock = task.Clock()
    clock.advance(1000)
    table = RegistrationTable(clock, lambda lt: 10.0, 3600, 60, 86400, lambda reg, by: None)
    table.register("d1", Params(endpoint="ep1"), [(5, 0)], REMOTE)
    options = SimpleNamespace(firmware_path=("fw",), firmware_uri="coap://h:5683",
                              host="127.0.0.1", port=5683, firmware_block=512)
    svc = SimpleNamespace(options=options, table=table, observations=Observations(),
                          context=object(), _loop=None, transport_name="nb",
                          hub=SimpleNamespace(clock=clock, metrics=Metrics()),
                          _reachable=lambda device: reachable)
    driver = FirmwareDriver(svc)  # type: ignore[arg-type]
    token = driver.publish("ab" * 32, b"x" * 2000).rsplit("/", 1)[1]
    driver._updates["d1"] = SimpleNamespace(method="pull", image_sha256="ab" * 32)
    return driver, svc, clock, token


def block_request(token: str, remote=REMOTE) -> Message:
    m = Message(code=Code.GET, uri_path=("fw", token))
    m.opt.block2 = (1, False, 5)
    m.remote = remote
    return m


def test_a_lapsed_observation_is_renewed_when_the_device_next_fetches_a_block():
    driver, svc, _, token = make(reachable=False)
    for path in OBSERVED:
        driver.observation_ended("d1", path, "no answer within 2 s")
    assert svc.observations.added == []  # asleep: asking now would only time out again
    resp = driver.serve(block_request(token))
    assert resp.code == Code.CONTENT
    assert svc.observations.added == [("d1", REMOTE, list(OBSERVED))]
    assert svc.hub.metrics.counts["ota.observations_renewed"] == 1
    driver.serve(block_request(token))  # renewed once per lapse, not at every block
    assert len(svc.observations.added) == 1


def test_not_renewed_before_a_sign_of_life_even_when_the_device_seems_to_listen():
    # the device did not answer: asking again at once would hold its exchange slot
    driver, svc, clock, _ = make(reachable=True)
    driver.observation_ended("d1", OBSERVED[0], "TimeoutError: exchange ended")
    clock.advance(60)
    assert svc.observations.added == []
    driver.heard("d1")
    assert svc.observations.added == [("d1", REMOTE, list(OBSERVED))]


def test_a_step_in_the_devices_window_or_a_notification_renews_too():
    driver, svc, _, _ = make()
    driver.observation_ended("d1", OBSERVED[1], "no answer within 2 s")
    driver.heard("d1")  # what run() and the notifications' path call
    assert len(svc.observations.added) == 1


def test_a_refusal_or_a_device_without_update_is_not_renewed():
    driver, svc, _, token = make()
    driver.observation_ended("d1", OBSERVED[0], "refused with 4.04 Not Found")
    driver.observation_ended("d1", (3303, 0), "no answer within 2 s")  # not OTA's
    driver.observation_ended("d2", OBSERVED[0], "no answer within 2 s")  # not attached
    driver.serve(block_request(token))
    driver.heard("d2")
    assert svc.observations.added == []
    driver.observation_ended("d1", OBSERVED[0], "no answer within 2 s")
    driver.detach("d1")  # the update ended meanwhile
    driver.heard("d1")
    assert svc.observations.added == []


def test_renewals_are_bounded_per_update():
    driver, svc, _, _ = make()
    for _ in range(MAX_RENEWALS + 5):
        driver.observation_ended("d1", OBSERVED[0], "no answer within 2 s")
        driver.heard("d1")
    assert len(svc.observations.added) == MAX_RENEWALS
