"""Firmware images above ``api.max_body_kb`` (streamed to disk within their own limit,
``api.ota.max_image_kb``) and firmware scoped to a project or global: who uploads, reads
and deletes which image, and which images a campaign of a project may take."""

from __future__ import annotations

import hashlib
from pathlib import Path

from plugins.simulators.lwm2m.firmware import make_image
from tests.support.api_hub import ROOT_PASSWORD, populated_hub

OCTETS = {"Content-Type": "application/octet-stream"}
MAX_BODY_KB, MAX_IMAGE_KB = 16, 64


def _stored(tmp_path: Path) -> list[str]:
    d = tmp_path / "var" / "firmware"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def _chunks(data: bytes, size: int = 8192):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_images_above_the_body_limit_and_firmware_scopes(tmp_path):
    with populated_hub(tmp_path, api={"max_body_kb": MAX_BODY_KB,
                                      "ota": {"max_image_kb": MAX_IMAGE_KB}}) as hub:
        with hub.client(hub.login("root", ROOT_PASSWORD)) as root, \
                hub.client(hub.login("mgr1")) as mgr, hub.client(hub.login("op1")) as op, \
                hub.client(hub.login("view2")) as view2:
            q = {"project": "p1", "version": "2.0.0", "models": "simulated"}
            # above max_body_kb, within max_image_kb: taken whole, hashed as it streamed
            big = make_image("2.0.0", 40 * 1024)
            assert len(big) > MAX_BODY_KB * 1024
            r = mgr.post("/api/firmware", params=q, content=big, headers=OCTETS)
            assert r.status_code == 201, r.text
            p1_image = r.json()
            assert p1_image["size"] == len(big) and p1_image["project"] == "p1"
            assert p1_image["sha256"] == hashlib.sha256(big).hexdigest()
            assert (tmp_path / "var" / "firmware" / p1_image["sha256"]).read_bytes() == big
            # without Content-Length (chunked) too
            chunked = make_image("2.0.1", 30 * 1024)
            r = mgr.post("/api/firmware", params={**q, "version": "2.0.1"},
                         content=_chunks(chunked), headers=OCTETS)
            assert r.status_code == 201, r.text
            assert r.json()["sha256"] == hashlib.sha256(chunked).hexdigest()
            before = _stored(tmp_path)
            # above max_image_kb: 413 naming the limit, declared or streamed; nothing kept
            huge = make_image("3.0.0", MAX_IMAGE_KB * 1024 + 200)
            assert len(huge) > MAX_IMAGE_KB * 1024
            for content in (huge, _chunks(huge)):
                r = mgr.post("/api/firmware", params={**q, "version": "3.0.0"},
                             content=content, headers=OCTETS)
                assert r.status_code == 413, r.text
                assert f"at most {MAX_IMAGE_KB * 1024} bytes" in r.json()["detail"]
                assert "api.ota.max_image_kb" in r.json()["detail"]
            assert _stored(tmp_path) == before  # no temporary file left either
            assert "3.0.0" not in {f["version"] for f in mgr.get("/api/firmware").json()}
            # the other routes keep api.max_body_kb
            r = op.post("/api/hazards", json={"project": "p1", "category": "x",
                                              "description": "x" * (MAX_BODY_KB * 1024)})
            assert r.status_code == 413, r.text

            # global firmware: platform admins only
            g = {"version": "5.0.0", "models": "simulated"}
            image = make_image("5.0.0", 2000)
            for who in (mgr, op, view2):
                r = who.post("/api/firmware", params=g, content=image, headers=OCTETS)
                assert r.status_code == 403, r.text
            r = root.post("/api/firmware", params=g, content=image, headers=OCTETS)
            assert r.status_code == 201, r.text
            glob = r.json()
            assert glob["project"] is None
            assert root.post("/api/firmware", params=g, content=image, headers=OCTETS
                             ).status_code == 409  # the global version exists
            r = root.post("/api/firmware", params={**g, "project": "p2"},
                          content=make_image("5.0.0", 2100), headers=OCTETS)
            assert r.status_code == 201, r.text  # the same version in a project: its own
            p2_image = r.json()
            # reading: a project's own images and the global ones
            assert {f["id"] for f in view2.get("/api/firmware").json()} == {
                glob["id"], p2_image["id"]}
            assert {f["id"] for f in op.get("/api/firmware").json()} >= {
                glob["id"], p1_image["id"]}
            assert p2_image["id"] not in {f["id"] for f in op.get("/api/firmware").json()}
            assert view2.get(f"/api/firmware/{glob['id']}").status_code == 200
            assert view2.get(f"/api/firmware/{p1_image['id']}").status_code == 404
            assert op.get(f"/api/firmware/{p2_image['id']}").status_code == 404
            # deleting a global image: admins only
            assert mgr.delete(f"/api/firmware/{glob['id']}").status_code == 403

            # campaigns take an image their project sees: its own or a global one
            r = op.post("/api/ota/campaigns", json={"project": "p1",
                                                    "firmware_id": p2_image["id"]})
            assert r.status_code == 404, r.text  # p2's image is not visible in p1
            r = root.post("/api/ota/campaigns", json={"project": "p1",
                                                      "firmware_id": p2_image["id"]})
            assert r.status_code == 422 and "belongs to project p2" in r.text
            r = view2.post("/api/ota/campaigns", json={"project": "p2",
                                                       "firmware_id": glob["id"]})
            assert r.status_code == 403, r.text  # a viewer starts nothing
            r = op.post("/api/ota/campaigns", json={"project": "p1",
                                                    "firmware_id": glob["id"]})
            assert r.status_code == 201, r.text
            campaign = r.json()
            assert campaign["version"] == "5.0.0" and campaign["progress"]
            assert view2.get(f"/api/ota/campaigns/{campaign['id']}").status_code == 404
            # a global image a campaign used stays; an unused one goes
            assert root.delete(f"/api/firmware/{glob['id']}").status_code == 409
            assert root.delete(f"/api/firmware/{p2_image['id']}").status_code == 204
            # every act in the audit log, a global image's under "global"
            acts = [(e["action"], e["subject"]) for e in root.get(
                "/api/audit", params={"limit": 500}).json()["items"]]
            assert ("firmware.uploaded", "global") in acts
            assert ("firmware.uploaded", "p1") in acts
            assert ("firmware.deleted", "p2") in acts
