"""The simulator's object 5, without sockets: what a detector does with a package."""

import pytest

from plugins.simulators.lwm2m.firmware import (
    DOWNLOADED,
    DOWNLOADING,
    IDLE,
    UPDATING,
    Behaviour,
    FirmwareObject,
    StateError,
    make_image,
    plan_behaviours,
)

IMAGE = make_image("1.1.10", 2000)


def push(fw, image=IMAGE, size=512):
    blocks = [image[i:i + size] for i in range(0, len(image), size)]
    for n, b in enumerate(blocks):
        fw.push_block(n, n + 1 < len(blocks), b)


def test_push_then_execute_updates_the_version():
    fw = FirmwareObject(version="1.1.1")
    push(fw)
    assert (fw.state, fw.result, fw.pending_version) == (DOWNLOADED, 0, "1.1.10")
    fw.execute()
    assert fw.state == UPDATING
    fw.finish_update()
    assert (fw.state, fw.result, fw.version, fw.flashes) == (IDLE, 1, "1.1.10", ["1.1.10"])


def test_a_repeated_block_is_taken_once_and_a_gap_refused():
    fw = FirmwareObject()
    fw.push_block(0, True, IMAGE[:512])
    fw.push_block(0, True, IMAGE[:512])  # its answer was lost; sent again
    assert fw.blocks == 1
    with pytest.raises(StateError):
        fw.push_block(2, True, IMAGE[1024:1536])


@pytest.mark.parametrize("image,code", [
    (b"not a simulator image\n" + bytes(100), 6),
    (IMAGE[:-1] + bytes([IMAGE[-1] ^ 1]), 5),
])
def test_bad_packages_are_refused_with_their_result(image, code):
    fw = FirmwareObject()
    push(fw, image)
    assert (fw.state, fw.result) == (IDLE, code)
    with pytest.raises(StateError):
        fw.execute()


@pytest.mark.parametrize("code", range(2, 12))
def test_a_rejecting_device_reports_its_code(code):
    fw = FirmwareObject(behaviour=Behaviour(reject=code))
    push(fw)
    assert (fw.state, fw.result) == (IDLE, code)


def test_uri_write_reset_and_errors():
    fw = FirmwareObject()
    assert fw.write_uri("coap://h/fw/x")
    assert fw.state == DOWNLOADING
    assert not fw.write_uri("coap://h/fw/x")  # the same write again: nothing new
    with pytest.raises(StateError):
        fw.write_uri("coap://h/fw/other")
    assert not fw.write_uri("")  # reset
    assert (fw.state, fw.result, fw.uri) == (IDLE, 0, "")
    assert not fw.write_uri("http://h/fw/x") and fw.result == 9
    fw.reset()
    assert not fw.write_uri("no uri") and fw.result == 7


def test_drop_happens_once_mid_transfer():
    fw = FirmwareObject(behaviour=Behaviour(drop_after=2))
    assert fw.write_uri("coap://h/fw/x")
    fw.add_block(IMAGE[:512], True)
    assert not fw.should_drop()
    fw.add_block(IMAGE[512:1024], True)
    assert fw.should_drop() and not fw.should_drop()


def test_plan_behaviours_spreads_evenly_and_exactly():
    plan = plan_behaviours(200, drop_rate=0.1, reject_rate=0.02)
    assert sum(1 for b in plan if b.reject == 5) == 4
    assert sum(1 for b in plan if b.drop_after) == 20
    assert not any(b.reject and b.drop_after for b in plan)
    assert not any(b.reject for b in plan[:10])  # a canary of 10 holds no refusing device
    assert plan == plan_behaviours(200, drop_rate=0.1, reject_rate=0.02)
