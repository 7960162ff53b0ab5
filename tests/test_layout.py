"""One room per area: no import circles, and the core imports no area."""
from __future__ import annotations

from advgen import areas
from advgen.sources import cycles, import_graph
from tests.conftest import ROOT

CORE = ("claims", "config", "document", "headline", "io", "report", "schema", "sidecar", "stats", "params_digest")


def test_cycles_finds_a_circle_and_none_in_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_library_has_no_import_circle():
    assert cycles(import_graph(ROOT)) == []


def test_the_core_imports_no_area():
    graph = import_graph(ROOT)
    area_dirs = tuple(f"src/advgen/{a.name}/" for a in areas.AREAS)
    for name in CORE:
        deps = graph[f"src/advgen/{name}.py"]
        assert not [d for d in deps if d.startswith(area_dirs) or d == "src/advgen/areas.py"], (name, deps)


def test_every_area_owns_its_slice():
    for a in areas.AREAS:
        folder = ROOT / "src" / "advgen" / a.name
        assert {p.name for p in folder.glob("*.py")} >= {"params.py", "claims.py", "headline.py", "report.py"}, a.name
