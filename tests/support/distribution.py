"""Installing test distributions the way pip leaves them, and the toy plugins they carry."""

from __future__ import annotations

from pathlib import Path

#: the test plugins (``hubtest_*.py``), installed by tests through write_distribution
PLUGINS = Path(__file__).parent / "plugins"


def write_distribution(site: Path, name: str, entry_points: dict[str, str],
                       modules: dict[str, str], version: str = "1.0") -> None:
    """Lay out an installed distribution in ``site``: its modules and a ``.dist-info`` with
    METADATA and entry_points.txt, exactly what pip would leave behind."""
    site.mkdir(parents=True, exist_ok=True)
    for mod, source in modules.items():
        (site / f"{mod}.py").write_text(source, encoding="utf-8")
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    eps = "[hub]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(eps)
