"""The firmware repository and campaign controls through the API and `hub ota`: sizes,
hashes and vendor signatures checked, versions refused when they are none, roles within
the project, pause / resume / cancel, and every act in the audit log."""

from __future__ import annotations

import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from plugins.simulators.lwm2m.firmware import make_image
from tests.support.api_hub import PASSWORD, hub_cli
from tests.support.ota import OtaHub

OCTETS = {"Content-Type": "application/octet-stream"}


def test_repository_campaign_controls_roles_and_audit(tmp_path):
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "vendor.pub").write_bytes(pem)
    hub = OtaHub(tmp_path, 4, api={"max_image_kb": 8, "vendor_keys": ["vendor.pub"]})
    try:
        image = make_image("2.0.0", 5000)
        with hub.client() as root:
            for name, role in (("op1", "operator"), ("mgr1", "manager")):
                p1 = root.get("/api/projects").json()[0]["id"]
                r = root.post("/api/users", json={"name": name, "password": PASSWORD,
                                                  "role": role, "node_id": p1})
                assert r.status_code == 201, r.text
        op = _login(hub, "op1")
        mgr = _login(hub, "mgr1")
        q = {"project": "p1", "version": "2.0.0", "models": "nb-efd"}
        # an operator may not add firmware; a manager may
        assert op.post("/api/firmware", params=q, content=image, headers=OCTETS
                       ).status_code == 403
        r = mgr.post("/api/firmware", params={**q, "version": "2..0"}, content=image,
                     headers=OCTETS)
        assert r.status_code == 422 and "not a version" in r.text
        r = mgr.post("/api/firmware", params=q, content=make_image("2.0.0", 9000),
                     headers=OCTETS)
        assert r.status_code == 413, r.text
        r = mgr.post("/api/firmware", params={**q, "signature": "00" * 64}, content=image,
                     headers=OCTETS)
        assert r.status_code == 422 and "does not verify" in r.text
        sig = key.sign(image).hex()
        r = mgr.post("/api/firmware", params={**q, "signature": sig, "notes": "fixes"},
                     content=image, headers=OCTETS)
        assert r.status_code == 201, r.text
        fw = r.json()
        assert fw["signed"] and fw["sha256"] == hashlib.sha256(image).hexdigest()
        stored = tmp_path / "var" / "firmware" / fw["sha256"]
        assert stored.read_bytes() == image
        assert mgr.post("/api/firmware", params=q, content=image, headers=OCTETS
                        ).status_code == 409  # the version exists in the project
        # campaigns: operators of the project; the devices here never wake, so it stays
        # in its first wave while it is paused, resumed and cancelled
        r = op.post("/api/ota/campaigns", json={"project": "p1", "firmware_id": fw["id"],
                                                "from_versions": ["1.x"]})
        assert r.status_code == 422
        r = op.post("/api/ota/campaigns", json={"project": "p1", "firmware_id": fw["id"],
                                                "canary": 1, "batch": 2})
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        assert r.json()["progress"] == {"checking": 1, "queued": 3}
        # a device in a running campaign is in no second one
        r = op.post("/api/ota/campaigns", json={"project": "p1", "firmware_id": fw["id"],
                                                "devices": [hub.devices[0]]})
        assert r.status_code == 422
        assert op.post(f"/api/ota/campaigns/{cid}/resume", json={}).status_code == 409
        assert op.post(f"/api/ota/campaigns/{cid}/pause", json={"note": "night"}
                       ).json()["state"] == "paused"
        assert op.post(f"/api/ota/campaigns/{cid}/resume", json={}).json()["state"] == \
            "running"
        r = op.post(f"/api/ota/campaigns/{cid}/cancel", json={})
        assert r.json()["state"] == "cancelled" and r.json()["progress"] == {"cancelled": 4}
        devices = op.get(f"/api/ota/campaigns/{cid}/devices").json()
        assert {d["phase"] for d in devices} == {"cancelled"}
        assert mgr.delete(f"/api/firmware/{fw['id']}").status_code == 409  # history needs it
        # the command line reads the same, and steers through the running hub
        out = hub_cli(hub.config, "ota", "list", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.splitlines()[0])["state"] == "cancelled"
        out = hub_cli(hub.config, "ota", "start", "--project", "p1", "--firmware",
                      str(fw["id"]), "--canary", "2")
        assert out.returncode == 0, out.stderr
        cid2 = int(out.stdout.split()[1])
        out = hub_cli(hub.config, "ota", "pause", str(cid2), "--note", "by hand")
        assert out.returncode == 0 and "paused" in out.stdout, out.stderr
        out = hub_cli(hub.config, "ota", "show", str(cid2))
        assert out.returncode == 0 and "paused" in out.stdout, out.stderr
        out = hub_cli(hub.config, "ota", "history", str(cid2), hub.devices[0])
        assert out.returncode == 0 and "checking" in out.stdout, out.stderr
        out = hub_cli(hub.config, "ota", "cancel", str(cid2))
        assert out.returncode == 0 and "cancelled" in out.stdout, out.stderr
        op.close()
        mgr.close()
    finally:
        log = hub.stop()
    assert "Traceback" not in log
    out = hub_cli(hub.config, "audit", "list", "--json")
    acts = [(e["actor"], e["action"]) for e in map(json.loads, out.stdout.splitlines())]
    for act in (("mgr1", "firmware.uploaded"), ("op1", "ota.campaign.created"),
                ("op1", "ota.campaign.pause"), ("op1", "ota.campaign.resume"),
                ("op1", "ota.campaign.cancel"), ("hub", "ota.campaign.cancelled")):
        assert act in acts, (act, acts)
    assert sum(1 for a in acts if a[1] == "ota.campaign.created") == 2


def _login(hub: OtaHub, name: str):
    import httpx

    with httpx.Client(base_url=hub.url, timeout=30) as c:
        r = c.post("/api/auth/login", json={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
    return httpx.Client(base_url=hub.url, timeout=30, headers={"Authorization":
                                                               f"Bearer {token}"})
