"""The console's parts that need no server: the message catalogues (every key in every
language, with the same placeholders; every key a template names exists), locale formats,
the scoping helper (the API's own rules), CSRF tokens and the console settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hub.api.authz import Principal, Tree
from hub.console import i18n
from hub.console.auth import Session, csrf_for
from hub.console.settings import ConsoleSettings
from hub.store.base import Grant, Node

TEMPLATES = Path(i18n.__file__).parent / "templates"


def test_every_key_is_in_every_language_with_the_same_placeholders():
    cats = {lang: i18n.catalogue(lang) for lang in i18n.LANGUAGES}
    keys = {lang: set(c) for lang, c in cats.items()}
    base = keys[i18n.DEFAULT]
    assert len(base) > 100
    for lang, k in keys.items():
        assert k == base, f"{lang}: missing {sorted(base - k)}, extra {sorted(k - base)}"
    for key in base:
        marks = {lang: i18n.placeholders(c[key]) for lang, c in cats.items()}
        assert len({frozenset(m) for m in marks.values()}) == 1, (key, marks)
        assert all(c[key].strip() for c in cats.values()), key


def test_every_literal_key_the_templates_use_exists():
    used: set[str] = set()
    for path in TEMPLATES.rglob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z0-9_.]+)["']\s*[,)]""",
                               path.read_text(encoding="utf-8")))
    assert len(used) > 50
    missing = sorted(k for k in used if k not in i18n.catalogue(i18n.DEFAULT))
    assert missing == []


def test_chinese_is_the_default_and_the_choice_holds():
    assert i18n.choose(None) == "zh_CN"
    assert i18n.choose("xx") == "zh_CN"
    assert i18n.choose("en") == "en"
    t = i18n.Translator("en")
    assert t("nav.home") == "Home" and i18n.Translator("zh_CN")("nav.home") == "平台首页"
    assert t("devices.total", n="3") == "3 devices"
    assert t("no.such.key") == "no.such.key"


def test_dates_and_numbers_follow_the_locale():
    zh, en = i18n.Translator("zh_CN"), i18n.Translator("en")
    zh.zone = en.zone = i18n.UTC
    ts = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
    assert zh.datetime(ts, "medium") == "2026年5月28日 20:26:40"
    assert en.datetime(ts, "medium").startswith("May 28, 2026")
    assert en.number(12345.678) == "12,345.68"
    assert zh.number(None) == "—"


def _tree() -> Tree:
    return Tree([Node(1, None, "platform", "平台"), Node(2, 1, "unit", "U1"),
                 Node(3, 2, "project", "A", code="pa"), Node(4, 2, "project", "B", code="pb")])


@pytest.mark.parametrize(("role", "project", "operate", "read"), [
    ("operator", "pa", True, True),
    ("operator", "pb", False, False),
    ("viewer", "pa", False, True),
    ("auditor", "pa", False, True),
    ("manager", "pa", True, True),
])
def test_session_scope_is_the_apis(role, project, operate, read):
    tree = _tree()
    s = Session(Principal("u", [Grant(1, 1, role, 3)]), tree, "hubt_x")
    assert s.can(project, "operator") is operate
    assert s.principal.can_read(tree, tree.node_of_project(project)) is read


def test_a_platform_admin_acts_everywhere_and_unknown_projects_belong_to_the_platform():
    s = Session(Principal("root", [Grant(1, 1, "admin", 1)]), _tree(), "hubt_y")
    assert s.can("pb", "operator") and s.can("not-in-tree", "admin")
    op = Session(Principal("op", [Grant(2, 2, "operator", 3)]), _tree(), "hubt_z")
    assert not op.can("not-in-tree", "viewer")


def test_csrf_tokens_belong_to_their_session():
    assert csrf_for("hubt_a") == csrf_for("hubt_a")
    assert csrf_for("hubt_a") != csrf_for("hubt_b")
    assert "hubt_a" not in csrf_for("hubt_a")


def test_tile_origin_for_the_pages_csp():
    assert ConsoleSettings().tile_origin is None
    assert ConsoleSettings(tile_url="https://t{s}.tianditu.gov.cn/vec_w/wmts?x={x}"
                           ).tile_origin == "https://*.tianditu.gov.cn"
    assert ConsoleSettings(tile_url="http://10.0.0.5:8080/{z}/{x}/{y}.png"
                           ).tile_origin == "http://10.0.0.5:8080"
    assert ConsoleSettings(tile_url="/tiles/{z}/{x}/{y}.png").tile_origin is None


def test_package_data_ships_every_asset():
    """setup.cfg's package_data names every template, catalogue and vendored file, so an
    installed hub (not only a checkout) serves the console and the API docs."""
    from setuptools.config.setupcfg import read_configuration

    root = Path(i18n.__file__).parents[2]
    patterns = read_configuration(root / "setup.cfg")["options"]["package_data"]["hub"]
    hub_dir = root / "hub"
    shipped = {p for pattern in patterns for p in hub_dir.glob(pattern) if p.is_file()}
    assets = {p for d in ("console/templates", "console/locale", "console/static",
                          "api/static") for p in (hub_dir / d).rglob("*") if p.is_file()}
    assert len(assets) > 30
    assert sorted(str(p.relative_to(hub_dir)) for p in assets - shipped) == []


def test_console_section_is_checked(tmp_path):
    from hub.config import check_config
    from hub.pluginmanager import make_plugins
    from hub.validate import ConfigError

    plugins = make_plugins()
    base = {"hub": {"state_dir": str(tmp_path)}, "devices": []}
    cfg = check_config({**base, "api": {"port": 0}}, str(tmp_path / "h.yaml"), plugins)
    assert cfg.api.console == ConsoleSettings()  # on, with no tile server
    cfg = check_config({**base, "api": {"console": {
        "tile_url": "https://tiles.example.net/{z}/{x}/{y}.png", "tile_attribution": "©"}}},
        str(tmp_path / "h.yaml"), plugins)
    assert cfg.api.console.tile_origin == "https://tiles.example.net"
    with pytest.raises(ConfigError) as e:
        check_config({**base, "api": {"console": {"tile_url": "ftp://x/{z}", "map": 1}}},
                     str(tmp_path / "h.yaml"), plugins)
    assert "api.console.tile_url" in str(e.value)
    assert "api.console.map: is not a known key here" in str(e.value)
