"""A CoAP client nobody here wrote takes a pull update's blocks from the hub's firmware URI:
libcoap's ``coap-client-notls`` (Debian libcoap3-bin), block-wise (Block2) from the first
block, and again from a later block as a device resuming after a sleep would."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from plugins.simulators.lwm2m.firmware import make_image
from tests.support.ota import OtaHub

CLIENT = shutil.which("coap-client-notls")
pytestmark = pytest.mark.skipif(CLIENT is None, reason="libcoap3-bin missing")


def _get(uri: str, out, block: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLIENT, "-m", "get", "-b", block, "-o", str(out), "-B", "20", uri],
                          capture_output=True, timeout=60)


def test_libcoap_fetches_the_image_block_wise(tmp_path):
    hub = OtaHub(tmp_path, 1)  # its device never registers: the campaign only publishes
    try:
        image = make_image("2.0.0", 3000)
        uri = hub.publish(image)
        whole = tmp_path / "whole.bin"
        got = _get(uri, whole, "64")
        assert got.returncode == 0, got.stderr
        assert whole.read_bytes() == image  # 47 blocks of 64 bytes, reassembled by libcoap
        # a device that slept after 10 blocks asks for block 10 (libcoap takes that one):
        # served from the image by its number, with no session to have lost
        for num in (10, 46):
            part = tmp_path / f"block{num}.bin"
            got = _get(uri, part, f"{num},64")
            assert got.returncode == 0, got.stderr
            assert part.read_bytes() == image[num * 64:(num + 1) * 64]
        # larger blocks than the hub's own (512) are served in the hub's size
        big = tmp_path / "big.bin"
        got = _get(uri, big, "1024")
        assert got.returncode == 0, got.stderr
        assert big.read_bytes() == image
        missing = _get(f"coap://127.0.0.1:{hub.port}/fw/{'0' * 16}", tmp_path / "x", "64")
        assert b"4.04" in missing.stdout + missing.stderr
    finally:
        hub.stop()
