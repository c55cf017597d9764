"""Interop: node-coap (the npm ``coap`` package, pinned in
tests/support/peers/node_coap/package.json and its lockfile) as a CoAP client nobody here
wrote takes a pull update's blocks (Block2) from the hub's firmware URI: from the first
block, and from a later block as a device resuming after a sleep would. ``npm ci`` installs
it in the test's setup; without node or npm the test is skipped."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from plugins.simulators.lwm2m.firmware import make_image
from tests.support.ota import OtaHub

PEER = Path(__file__).resolve().parent.parent / "support" / "peers" / "node_coap"
NODE, NPM = shutil.which("node"), shutil.which("npm")
pytestmark = pytest.mark.skipif(NODE is None or NPM is None, reason="node or npm missing")


@pytest.fixture(scope="module")
def node_coap() -> Path:
    if not (PEER / "node_modules" / "coap" / "package.json").exists():
        done = subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=PEER,
                              capture_output=True, text=True, timeout=300)
        if done.returncode:
            pytest.skip(f"npm ci failed (no registry here?): {done.stderr[-500:]}")
    version = json.loads((PEER / "node_modules" / "coap" / "package.json").read_text())
    assert version["version"] == "1.5.0"
    return PEER / "fetch_blocks.js"


def _fetch(script: Path, uri: str, num: int, size: int) -> dict:
    done = subprocess.run([NODE, str(script), uri, str(num), str(size)], cwd=PEER,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_node_coap_fetches_the_image_block_wise(tmp_path, node_coap):
    hub = OtaHub(tmp_path, 1)  # its device never registers: the campaign only publishes
    try:
        image = make_image("2.0.0", 3000)
        sha = hashlib.sha256(image).hexdigest()
        uri = hub.publish(image)
        # from the first block: 47 blocks of 64 bytes, each asked for by node-coap
        got = _fetch(node_coap, uri, 0, 64)
        assert got["code"] == "2.05", got
        assert got["length"] == len(image) and got["sha256"] == sha
        assert "ETag" in got["options"]  # the image's, for a resuming device to compare
        # a device that slept after 10 blocks goes on from block 10
        rest = image[10 * 64:]
        got = _fetch(node_coap, uri, 10, 64)
        assert got["code"] == "2.05", got
        assert got["length"] == len(rest)
        assert got["sha256"] == hashlib.sha256(rest).hexdigest()
        # an image the hub does not publish
        got = _fetch(node_coap, f"coap://127.0.0.1:{hub.port}/fw/{'0' * 16}", 0, 64)
        assert got["code"] == "4.04", got
    finally:
        hub.stop()
