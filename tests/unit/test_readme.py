"""The README's examples run: the vendor plugin and its byte-vector test, every complete
configuration, every `hub` command line, every file named; the same for the documents in
docs/ (the 简体中文 quick start). Every hook is documented, and the contents are complete."""

from __future__ import annotations

import ast
import inspect
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ["README.md", "docs/zh-CN/quickstart.md"]
#: examples are written for conf/hub.yaml: relative paths in them are relative to conf/
ANCHOR = str(ROOT / "conf" / "hub.yaml")
SECTIONS = {"hub", "journal", "audit", "presence", "alarms", "models", "transports", "sinks",
            "devices", "provisioning"}


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_vendor_plugin_example_runs():
    """The README's device model decodes its own example vector and refuses bad input."""
    plugin_src, test_src = [b for b in python_blocks() if "acme_efd" in b or "check_decode" in b]
    ns: dict = {}
    exec(compile(plugin_src, "README.md:plugin", "exec"), ns)
    exec(compile(test_src, "README.md:test", "exec"), ns)
    ns["test_frame"]()
    types = ns["hub_register_device_models"]()
    assert types[0].name == "acme_efd"
    from hub.contracts import DecodeError

    model = types[0].factory(None)
    try:
        model.decode("d1", b"\x00", 0.0)
    except DecodeError as e:
        assert "expected 4 bytes" in str(e)
    else:
        raise AssertionError("a short frame was accepted")


def test_readme_opens_with_the_two_commands():
    """README starts with `make run` and `make test`, the commands CI and users rely on."""
    head = README.split("\n\n", 2)[1]
    assert "make run" in head and "make test" in head


def test_readme_dtu_configuration_is_valid():
    """The DTU example configuration in the README passes the configuration check."""
    import yaml

    from hub.config import check_config
    from hub.pluginmanager import make_plugins

    blocks = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
    dtu = next(b for b in blocks if "type: tcp_dtu" in b and "registration:" in b)
    cfg = check_config(yaml.safe_load(dtu), ANCHOR, make_plugins())
    assert [d.address_key for d in cfg.devices] == [("861234567890123", 1),
                                                     ("861234567890123", 2)]


def test_readme_lwm2m_configurations_are_valid(monkeypatch):
    """The NB-IoT examples in the README (the transport with its device, the two LwM2M
    models) pass the configuration check; so does the package docstring's example."""
    import yaml

    from hub.config import check_config
    from hub.pluginmanager import make_plugins
    from plugins.transports import coap_lwm2m

    monkeypatch.chdir(ROOT)  # the docstring's map is repo-relative; the README's beside conf/
    blocks = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
    nb = next(b for b in blocks if "type: coap_lwm2m" in b)
    models = next(b for b in blocks if "type: lwm2m_binary" in b)
    doc = coap_lwm2m.__doc__.split("::", 1)[1].split("\n\n")[1]
    plugins = make_plugins()
    cfg = check_config(yaml.safe_load(nb), ANCHOR, plugins)
    assert [(d.id, d.model) for d in cfg.devices] == [("efd-21", "nb-efd")]
    assert check_config(yaml.safe_load(doc), "coap_lwm2m", plugins).devices[0].id == "efd-1"
    both = {**yaml.safe_load(models), "transports": yaml.safe_load(nb)["transports"]}
    cfg = check_config(both, ANCHOR, plugins)
    assert set(cfg.models) == {"nb-efd", "nb-efd-frames"}


# ---- every document: configurations, commands, files -------------------------------------


def doc_text(doc: str) -> str:
    return (ROOT / doc).read_text(encoding="utf-8")


def yaml_configs() -> list[tuple[str, int, str]]:
    """(document, index, text) of each YAML block that is a hub configuration (its top-level
    keys are configuration sections); fragments of a section are left to their own tests."""
    import yaml

    out = []
    for doc in DOCS:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", doc_text(doc), flags=re.S)):
            data = yaml.safe_load(block)
            if isinstance(data, dict) and data and set(data) <= SECTIONS:
                out.append((doc, i, block))
    return out


def with_secrets(node, monkeypatch, tmp_path):
    """{env: X} set to a placeholder, {file: P} pointed at a placeholder file."""
    if isinstance(node, dict):
        if len(node) == 1 and "env" in node:
            monkeypatch.setenv(node["env"], "123456")  # digits: a valid SIM PIN and meter password
            return node
        if len(node) == 1 and "file" in node:
            secret = tmp_path / "secret"
            secret.write_text("placeholder\n")
            return {"file": str(secret)}
        return {k: with_secrets(v, monkeypatch, tmp_path) for k, v in node.items()}
    if isinstance(node, list):
        return [with_secrets(v, monkeypatch, tmp_path) for v in node]
    return node


def test_the_documents_have_configurations():
    assert {doc for doc, _, _ in yaml_configs()} == set(DOCS)


@pytest.mark.parametrize("doc, index, block", yaml_configs(),
                         ids=[f"{d}#{i}" for d, i, _ in yaml_configs()])
def test_every_configuration_example_is_valid(doc, index, block, monkeypatch, tmp_path):
    """Checked as if it were conf/hub.yaml, from another directory: a map or state_dir
    that only works from the checkout fails here (the README named conf/devices/efd.yaml,
    which does not exist)."""
    import yaml

    from hub.config import check_config
    from hub.pluginmanager import make_plugins

    monkeypatch.chdir(tmp_path)
    data = with_secrets(yaml.safe_load(block), monkeypatch, tmp_path)
    check_config(data, ANCHOR, make_plugins())


def test_the_zh_quick_start_device_fits_into_the_default(monkeypatch, tmp_path):
    """The quick start says: add this to conf/hub.yaml. So the merge must be valid."""
    import yaml

    from hub.config import check_config, load_config
    from hub.pluginmanager import make_plugins

    [(_, _, block)] = yaml_configs_of("docs/zh-CN/quickstart.md")
    default = yaml.safe_load((ROOT / "conf" / "hub.yaml").read_text(encoding="utf-8"))
    extra = yaml.safe_load(block)
    merged = {**default, "models": {**(default.get("models") or {}), **extra["models"]},
              "transports": {**default["transports"], **extra["transports"]},
              "devices": default["devices"] + extra["devices"]}
    monkeypatch.chdir(tmp_path)
    cfg = check_config(merged, ANCHOR, make_plugins())
    assert cfg.devices[-1].id == "efd-1" and cfg.devices[-1].alarms["temperature"].alarm == 70
    assert cfg.state_dir == load_config(ANCHOR, make_plugins()).state_dir == str(ROOT / "var")


def yaml_configs_of(doc: str) -> list[tuple[str, int, str]]:
    return [c for c in yaml_configs() if c[0] == doc]


def hub_command_lines(doc: str) -> list[list[str]]:
    """Each `hub ...` command of the document's shell blocks, as argv after `hub`."""
    out = []
    for block in re.findall(r"```(?:sh|bash)\n(.*?)```", doc_text(doc), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # a line of a multi-line argument (curl -d "{...}")
                if re.search(r"(^|/bin/)hub\s", line.strip()):
                    raise
                continue
            starts = [i for i, w in enumerate(words)
                      if (i == 0 and w == "hub") or w.endswith("/bin/hub")]
            if not starts:
                continue
            argv = words[starts[0] + 1:]
            for op in ("|", "&&", ";"):
                if op in argv:
                    argv = argv[:argv.index(op)]
            out.append([w for w in argv if not (w.startswith("[") and w.endswith("]"))])
    return out


@pytest.mark.parametrize("doc", DOCS)
def test_every_hub_command_in_the_documents_parses(doc, capsys):
    """Each subcommand and option shown exists (parsed, not run)."""
    from hub.cli import build_parser
    from hub.pluginmanager import make_plugins

    parser = build_parser(make_plugins(strict=False))
    lines = hub_command_lines(doc)
    assert len(lines) >= 5
    for argv in lines:
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            raise AssertionError(f"{doc}: `hub {' '.join(argv)}`: "
                                 f"{capsys.readouterr().err}") from None
        assert callable(args.func)


@pytest.mark.parametrize("doc", DOCS)
def test_files_named_in_the_documents_exist(doc):
    top = "conf|docs|scripts|hub|plugins|tests"
    named = set(re.findall(rf"(?<![\w/.-])((?:{top})/[\w./-]*\w)", doc_text(doc)))
    named = {n for n in named if "*" not in n and "<" not in n}
    assert named
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert missing == [], missing


# ---- hooks and contents --------------------------------------------------------------------


def hookspecs() -> dict[str, list[str]]:
    """name -> argument names of every hook in hub/hookspecs.py."""
    from hub import hookspecs

    return {name: list(inspect.signature(fn).parameters)
            for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
            if name.startswith("hub_") and hasattr(fn, "hub_spec")}


def test_hookspecs_are_found():
    """The source lists the same hooks as the marked functions (a check of this test)."""
    tree = ast.parse((ROOT / "hub" / "hookspecs.py").read_text(encoding="utf-8"))
    in_source = {f.name for f in tree.body if isinstance(f, ast.FunctionDef)
                 and any(getattr(d, "id", None) == "hookspec" for d in f.decorator_list)}
    assert set(hookspecs()) == in_source and "hub_register_sms_providers" in in_source


def test_every_hook_is_documented_in_the_readme():
    """Like pytest's and datasette's documentation tests: each hook of hub/hookspecs.py has
    a row `hub_x(arguments)` in the README's "Plugin hooks" table, and the table lists no
    hook that does not exist."""
    section = README.split("\n## Plugin hooks\n", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(hub_\w+)\(([^)]*)\)` \|", section, flags=re.M))
    documented = {name: [a.strip() for a in args.split(",") if a.strip()]
                  for name, args in rows.items()}
    assert documented == hookspecs()


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_contents_list_every_section():
    headings = re.findall(r"^## (.+)$", README, flags=re.M)
    contents = README.split("\n## Contents\n", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"^- \[(.+)\]\(#([^)]+)\)$", contents, flags=re.M)
    assert [title for title, _ in links] == [h for h in headings if h != "Contents"]
    assert all(anchor(title) == target for title, target in links), links


def test_readme_plugin_subcommand_example_runs(tmp_path, capsys):
    """The README's `hub.cli.helpers` example adds a working subcommand."""
    import argparse

    block = next(b for b in python_blocks() if "hub_add_commands" in b)
    ns: dict = {}
    exec(compile(block, "README.md:subcommand", "exec"), ns)
    parser = argparse.ArgumentParser(prog="hub")
    sub = parser.add_subparsers(dest="command")
    ns["hub_add_commands"](sub)
    config = tmp_path / "hub.yaml"
    config.write_text("transports: {demo: {type: simulator}}\n"
                      "devices: [{id: d1, model: simulated, transport: demo, address: normal,"
                      " project: site-a}]\n")
    args = parser.parse_args(["sites", "-c", str(config), "--json"])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert out == '{"site": "site-a"}\n' and "the hub is not running" in err


def test_readme_sink_example_runs(tmp_path):
    from hub.testing import SinkHarness

    sink_src, test_src = [b for b in python_blocks() if "JsonLinesSink" in b][:2]
    ns: dict = {}
    exec(compile(sink_src, "README:sink", "exec"), ns)
    exec(compile(test_src, "README:sink-test", "exec"), ns)
    harness = SinkHarness(str(tmp_path / "var"))
    try:
        ns["test_an_alarm_is_sent_again_after_an_outage"](harness)
    finally:
        harness.close()
