"""The authorisation matrix, generated from the live OpenAPI schema: every route and verb is
refused without credentials (401), and refused (404, or 403 where existence is not secret)
to a user of another project for every resource type. A route added later without an entry
here fails :func:`test_every_route_is_in_the_matrix`, so it cannot skip the checks."""

from __future__ import annotations

import re

import pytest

from tests.support.api_hub import PASSWORD, ROOT_PASSWORD, populate, start_api_hub
from tests.support.services import wait_until

#: routes anyone may call, and why
PUBLIC = {
    ("post", "/api/auth/login"): "how one gets a token",
    ("post", "/api/auth/refresh"): "the refresh token is the credential",
    ("get", "/metrics"): "Prometheus scrapes without a token (names no person or device)",
    ("get", "/healthz"): "liveness probe",
    ("get", "/readyz"): "readiness probe",
}

#: bodies that reach for p1's resources, for routes whose target is in the body
FOREIGN_BODIES = {
    ("post", "/api/users"): lambda ids: {"name": "intruder", "password": PASSWORD,
                                         "role": "viewer", "node_id": ids["p1"]},
    ("post", "/api/units"): lambda ids: {"name": "x", "parent_id": ids["unit"]},
    ("post", "/api/projects"): lambda ids: {"name": "x", "code": "px", "unit_id": ids["unit"]},
    ("post", "/api/devices"): lambda ids: {"id": "dx", "name": "x", "project": "p1",
                                           "model": "simulated", "transport": "demo"},
    ("post", "/api/api-keys"): lambda ids: {"name": "x", "role": "viewer",
                                            "node_id": ids["p1"]},
    ("post", "/api/alarms/actions"): lambda ids: {"ids": [ids["alarm"]],
                                                  "action": "acknowledge"},
    ("post", "/api/hazards"): lambda ids: {"project": "p1", "category": "x",
                                           "description": "x"},
    ("post", "/api/hazards/transitions"): lambda ids: {"ids": [ids["hazard"]],
                                                       "to": "rectifying"},
    ("post", "/api/inspections/plans"): lambda ids: {"project": "p1", "name": "x",
                                                     "items": ["a"], "every": "daily"},
    ("post", "/api/ota/campaigns"): lambda ids: {"project": "p1",
                                                 "firmware_id": ids["firmware"]},
}

#: routes whose target (a project) is in the query
FOREIGN_QUERIES = {
    ("post", "/api/firmware"): {"project": "p1", "version": "9.9.9", "models": "simulated"},
}

#: list routes: answered, but nothing of p1 in them (logout last: it ends the session)
LISTS = [("get", "/api/devices"), ("get", "/api/gateways"), ("get", "/api/projects"),
         ("get", "/api/units"),
         ("get", "/api/events"), ("get", "/api/events/active"), ("get", "/api/users"),
         ("get", "/api/api-keys"), ("get", "/api/auth/me"),
         ("get", "/api/events/stream"), ("get", "/api/audit"), ("get", "/api/alarms"),
         ("get", "/api/alarms/stream"), ("get", "/api/hazards"), ("get", "/api/stats/alarms"),
         ("get", "/api/hazards/stream"), ("get", "/api/firmware"),
         ("get", "/api/ota/campaigns"), ("get", "/api/inspections/plans"),
         ("get", "/api/inspections/tasks"), ("get", "/api/inspections/stream"),
         ("post", "/api/auth/logout")]
LIST_PARAMS = {"/api/events/stream": {"after": 0, "idle_timeout": 1},
               "/api/alarms/stream": {"after": 0, "idle_timeout": 1},
               "/api/hazards/stream": {"after": 0, "idle_timeout": 1},
               "/api/inspections/stream": {"after": 0, "idle_timeout": 1}}

#: generic bodies that pass validation, for routes whose target is in the path
BODIES = {
    "/api/users/{user_id}": {"display_name": "x"},
    "/api/users/{user_id}/grants": {"role": "viewer", "node_id": 1},
    "/api/units/{unit_id}": {"name": "x"},
    "/api/projects/{project_id}": {"region": "x"},
    "/api/devices/{device_id}": {"name": "x"},
    "/api/events/{event_id}/ack": {"note": "x"},
    "/api/devices/{device_id}/commands": {"action": "trip"},
    "/api/alarms/{alarm_id}/actions": {"action": "acknowledge"},
    "/api/projects/{project_id}/notification-policy": {
        "steps": [{"delay": 0, "channel": "sms", "role": "operator"}]},
    "/api/users/{user_id}/notification-preferences": {"contacts": []},
    "/api/hazards/{hazard_id}/transitions": {"to": "rectifying"},
    "/api/inspections/plans/{plan_id}": {"name": "x"},
    "/api/inspections/tasks/{task_id}/result": {"results": []},
}


#: values of required query parameters
QUERY_VALUES = {"quantity": "temperature", "since": 0, "project": "p1", "version": "9.9.9",
                "models": "simulated", "item": "箱门"}


def _params(ids):
    return {"device_id": "efd-1", "project_id": ids["p1"], "unit_id": ids["unit"],
            "user_id": ids["op1"], "grant_id": ids["op1.grant"], "key_id": ids["key"],
            "event_id": ids["event"], "command_id": ids["command"], "alarm_id": ids["alarm"],
            "hazard_id": ids["hazard"], "file_id": ids["file"],
            "firmware_id": ids["firmware"], "campaign_id": ids["campaign"],
            "plan_id": ids["plan"], "task_id": ids["task"]}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    hub = start_api_hub(tmp_path_factory.mktemp("authz"))
    try:
        ids = populate(hub)
        with hub.client(hub.login("op1")) as op:
            r = op.post("/api/devices/efd-1/commands", json={"action": "trip", "wait": True})
            assert r.status_code == 202, r.text
            assert r.json()["status"] == "succeeded", r.json()
            ids["command"] = r.json()["id"]
            # d1 (overheat, alarm at 45 °C, no delay) raises soon
            alarms = wait_until(lambda: [
                e for e in op.get("/api/events/active", params={"kind": "alarm"}).json()
                if e["device"] == "d1"], 30, interval=0.2, what="an alarm of d1")
            ids["event"] = alarms[0]["id"]
            # and the alarm desk keeps a record of it
            records = wait_until(lambda: op.get("/api/alarms", params={"device": "d1"}
                                                ).json()["items"],
                                 30, interval=0.2, what="an alarm record for d1")
            ids["alarm"] = records[0]["id"]
            r = op.post("/api/hazards", json={"alarm_id": ids["alarm"], "category": "接线",
                                              "description": "loose terminal"})
            assert r.status_code == 201, r.text
            ids["hazard"] = r.json()["id"]
            r = op.post(f"/api/hazards/{ids['hazard']}/files", params={"name": "a.png"},
                        content=b"\x89PNG\r\n\x1a\n" + bytes(32),
                        headers={"Content-Type": "image/png"})
            assert r.status_code == 201, r.text
            ids["file"] = r.json()["id"]
        with hub.client(hub.login("root", ROOT_PASSWORD)) as root:
            r = root.post("/api/firmware", params={"project": "p1", "version": "1.0.1",
                                                   "models": "simulated"},
                          content=b"image", headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
            ids["firmware"] = r.json()["id"]
            r = root.post("/api/ota/campaigns", json={"project": "p1",
                                                      "firmware_id": ids["firmware"]})
            assert r.status_code == 201, r.text
            ids["campaign"] = r.json()["id"]
        with hub.client(hub.login("mgr1")) as mgr:
            r = mgr.post("/api/inspections/plans", json={
                "project": "p1", "name": "配电箱巡查", "items": ["箱门", "温度"],
                "every": "daily"})
            assert r.status_code == 201, r.text
            ids["plan"] = r.json()["id"]
            tasks = wait_until(  # its first task is due at once
                lambda: mgr.get("/api/inspections/tasks", params={"plan": ids["plan"]}).json(),
                10, what="the plan's first task")
            ids["task"] = tasks[0]["id"]
        yield hub
    finally:
        hub.stop()


_SCHEMAS: dict[str, dict] = {}


def routes(api, with_query=False):
    if api.url not in _SCHEMAS:
        _SCHEMAS[api.url] = api.client().get("/api/openapi.json").json()
    schema = _SCHEMAS[api.url]
    for path, item in schema["paths"].items():
        for method, op in item.items():
            required = [p["name"] for p in op.get("parameters", [])
                        if p["in"] == "query" and p.get("required")]
            if with_query:
                yield method, path, required
            else:
                yield method, path


def _query(path, api):
    for _method, p, required in routes(api, with_query=True):
        if p == path:
            return {name: QUERY_VALUES[name] for name in required}
    return {}


def test_every_route_is_in_the_matrix(api):
    for method, path in routes(api):
        key = (method, path)
        covered = (key in PUBLIC or key in LISTS or key in FOREIGN_BODIES
                   or key in FOREIGN_QUERIES or "{" in path)
        assert covered, f"{method.upper()} {path} is in no row of the authorisation matrix"
        if "{" in path:
            names = re.findall(r"{(\w+)}", path)
            assert all(n in _params(api.ids) for n in names), f"no foreign value for {path}"
    for method, path, required in routes(api, with_query=True):
        missing = set(required) - set(QUERY_VALUES)
        assert not missing, f"{method.upper()} {path}: no value for query {sorted(missing)}"


def test_no_credentials_is_401_everywhere(api):
    checked = 0
    with api.client() as anon:
        for method, path in routes(api):
            if (method, path) in PUBLIC:
                continue
            url = path.format(**_params(api.ids))
            for headers in ({}, {"Authorization": "Bearer hubt_forged"},
                            {"Authorization": "Bearer hubk_x_y"}):
                r = anon.request(method, url, json=BODIES.get(path, {}), headers=headers,
                                 params=_query(path, api))
                assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 25


def test_a_user_of_another_project_reaches_nothing(api):
    ids = api.ids
    with api.client(api.login("view2")) as other:
        # the control: view2 sees its own project's device
        assert other.get("/api/devices/d2").status_code == 200
        for method, path in routes(api):
            key = (method, path)
            if key in PUBLIC or key in LISTS:
                continue
            if key in FOREIGN_BODIES:
                r = other.request(method, path, json=FOREIGN_BODIES[key](ids))
            elif key in FOREIGN_QUERIES:
                r = other.request(method, path, params=FOREIGN_QUERIES[key], content=b"x")
            else:
                r = other.request(method, path.format(**_params(ids)), json=BODIES.get(path, {}),
                                  params=_query(path, api))
            assert r.status_code in (403, 404), (method, path, r.status_code, r.text)
        for method, path in LISTS:
            r = other.request(method, path, params=LIST_PARAMS.get(path, {}))
            assert r.status_code in (200, 204, 403), (method, path, r.text)
            text = r.text
            for foreign in ('"d1"', '"efd-1"', '"p1"', '"op1"', ids["key"]):
                assert foreign not in text, (path, foreign)
    # nothing was created or changed by the attempts
    with api.client(api.login("root", ROOT_PASSWORD)) as root:
        names = {u["name"] for u in root.get("/api/users").json()}
        assert "intruder" not in names
        assert root.get("/api/devices/efd-1").status_code == 200
        assert [p["code"] for p in root.get("/api/projects").json()] == ["p1", "p2"] or \
            sorted(p["code"] for p in root.get("/api/projects").json()) == ["p1", "p2"]


def test_roles_within_the_project(api):
    ids = api.ids
    with api.client(api.login("aud1")) as aud, api.client(api.login("op1")) as op, \
            api.client(api.login("mgr1")) as mgr:
        # auditor: reads, never acts
        assert aud.get("/api/devices/d1").status_code == 200
        assert aud.post("/api/devices/efd-1/commands", json={"action": "reset"}).status_code \
            == 403
        assert aud.post(f"/api/events/{ids['event']}/ack", json={}).status_code == 403
        # operator: commands and acknowledgements, no device management, no users
        assert op.post("/api/devices", json={"id": "new-1", "name": "n", "project": "p1",
                                             "model": "simulated", "transport": "demo"}
                       ).status_code == 403
        assert op.get("/api/users").status_code == 403
        ack = op.post(f"/api/events/{ids['event']}/ack", json={"note": "checked on site"})
        assert ack.status_code == 201, ack.text
        # manager: not above its own role, not outside its subtree
        assert mgr.post("/api/users", json={"name": "boss", "password": PASSWORD,
                                            "role": "admin", "node_id": ids["p1"]}
                        ).status_code == 403
        assert mgr.post("/api/users", json={"name": "far", "password": PASSWORD,
                                            "role": "viewer", "node_id": ids["p2"]}
                        ).status_code == 404
        assert mgr.post(f"/api/users/{ids['op1']}/grants",
                        json={"role": "admin", "node_id": ids["p1"]}).status_code == 403
        made = mgr.post("/api/users", json={"name": "op3", "password": PASSWORD,
                                            "role": "operator", "node_id": ids["p1"]})
        assert made.status_code == 201, made.text
        assert mgr.patch(f"/api/users/{ids['view2']}", json={"disabled": True}
                         ).status_code == 404
        # the API key (viewer of p1) reads p1, nothing else, and cannot act
    with api.client(ids["key.secret"]) as key:
        assert key.get("/api/devices/d1").status_code == 200
        assert key.get("/api/devices/d2").status_code == 404
        assert key.post("/api/devices/efd-1/commands", json={"action": "reset"}).status_code \
            == 403
    # the auditor of p1 reads p1's entries through the API, and only those
    with api.client(api.login("aud1")) as aud:
        page = aud.get("/api/audit", params={"limit": 1000}).json()
        subjects = {e["subject"] for e in page["items"]}
        assert "efd-1" in subjects and "d2" not in subjects and "view2" not in subjects
        assert ("op1", "command.requested") in {(e["actor"], e["action"])
                                                 for e in page["items"]}
    with api.client(api.login("op1")) as op:
        assert op.get("/api/audit").status_code == 403
    acts = {(e["actor"], e["action"]) for e in api.audit()}
    assert ("op1", "event.acknowledged") in acts
    assert ("op1", "command.requested") in acts
    assert ("mgr1", "user.created") in acts
    assert ("root", "user.created") in acts


def test_global_firmware_rows(api):
    """Firmware without a project (every project's): uploaded and deleted by platform admins
    only, read by anyone signed in, taken by a campaign of any project by its operators."""
    octets = {"Content-Type": "application/octet-stream"}
    q = {"version": "7.7.7", "models": "simulated"}
    with api.client(api.login("root", ROOT_PASSWORD)) as root, \
            api.client(api.login("mgr1")) as mgr, api.client(api.login("view2")) as view2, \
            api.client(api.login("op1")) as op:
        for who in (mgr, op, view2):
            assert who.post("/api/firmware", params=q, content=b"g", headers=octets
                            ).status_code == 403
        r = root.post("/api/firmware", params=q, content=b"g", headers=octets)
        assert r.status_code == 201, r.text
        fw = r.json()
        assert fw["project"] is None
        for who in (mgr, op, view2):
            assert who.get(f"/api/firmware/{fw['id']}").status_code == 200
            assert fw["id"] in {f["id"] for f in who.get("/api/firmware").json()}
            assert who.delete(f"/api/firmware/{fw['id']}").status_code == 403
        # view2 reads it but may not start a campaign with it, in p1 (not its project) or
        # in p2 (a viewer)
        assert view2.post("/api/ota/campaigns", json={"project": "p1", "firmware_id": fw["id"]}
                          ).status_code == 404
        assert view2.post("/api/ota/campaigns", json={"project": "p2", "firmware_id": fw["id"]}
                          ).status_code == 403
        assert root.delete(f"/api/firmware/{fw['id']}").status_code == 204
