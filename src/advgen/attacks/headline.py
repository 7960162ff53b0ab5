"""The attacks area's headline figures (``dvc metrics``): what a reviewer diffs for the attack,
robustness, transfer, forge, patch and dimension stages (the detail stays in their JSON)."""
from __future__ import annotations

from typing import Any

from ..headline import eps_group


def attack(m: dict[str, Any], only_eps: float | None = None, queries: bool = False) -> dict[str, Any]:
    """Accuracy at each eps > 0 (clean accuracy is in the robustness headline), or at ``only_eps``
    alone; with ``queries``, Square's success against the query budget instead (C7)."""
    if queries and "square" in m:
        sq = m["square"]
        return {"success_at_queries": {f"q={b}": v for b, v in sorted(sq["success_at_budget"].items(),
                                                                         key=lambda kv: int(kv[0]))},
                "median_queries_to_success": sq["median_queries_to_success"]}
    if only_eps is not None:
        return {"accuracy": {f"eps={only_eps:g}": m["accuracy"].get(f"{only_eps:g}")}}
    return {"accuracy": eps_group(m["accuracy"])}


def attacks(per_attack: dict[str, dict[str, Any]], eps: float, queries: bool) -> dict[str, Any]:
    """One model's attack headline: each L-inf attack's accuracy at ``eps`` (``attack.check_eps``;
    the worst case at every eps is in the robustness headline, each curve in
    ``reports/attacks/<model>/<attack>.json``), PGD-L2's at each of its radii, and with ``queries``
    (undefended models: C7) Square's success against the query budget. Groups are named after the
    attack (``{"pgd": {"eps=0.1": ..}, "square_success_at_queries": {..}, ...}``)."""
    out: dict[str, Any] = {}
    for name, m in per_attack.items():
        one = attack(m, eps if m.get("norm") == "Linf" else None, queries)
        for key, value in one.items():
            out[name if key == "accuracy" else f"{name}_{key}"] = value
    return out


def robustness(m: dict[str, Any]) -> dict[str, Any]:
    return {"clean_accuracy": m["clean_accuracy"], "worst_case": eps_group(m["linf"]["worst_case"]),
            "checks_failed": m["checks_failed"], "gradient_masking": m["gradient_masking"],
            "masking_points": sum(c["masking_points"] for c in m.get("cascade", []))}


def transfer(m: dict[str, Any]) -> dict[str, Any]:
    """Accuracy of each target on PGD crafted on another model (the diagonal is white box)."""
    return {"accuracy": {f"{s}->{t}": v for s, row in m["matrix"].items() for t, v in row.items() if s != t}}


def forge(m: dict[str, Any]) -> dict[str, Any]:
    c1, c2 = m["c1"], m["c2"]
    return {"c1": {"success_rate": c1["success_rate"], "median_steps": c1["median_steps"],
                   "feature_nn_ratio": c1["realism"]["feature"]["ratio"]},
            **{f"c2_{k}": {"success_rate": v["success_rate"], "median_l2": v["median_l2"]} for k, v in c2.items()}}


def patch(m: dict[str, Any]) -> dict[str, Any]:
    sizes = sorted(m["sizes"].values(), key=lambda e: e["size"])
    scales = sorted(m["ablation"]["scales"].values(), key=lambda s: s["scale"])
    return {"with_terms": {f"k={e['size']}": e["patches"]["with_terms"]["success_rate"] for e in sizes},
            "without_terms": {f"k={e['size']}": e["patches"]["without_terms"]["success_rate"] for e in sizes},
            "tv_with_terms": {f"k={e['size']}": e["patches"]["with_terms"]["tv"] for e in sizes},
            "nps_with_terms": {f"k={e['size']}": e["patches"]["with_terms"]["nps"] for e in sizes},
            "ablation": {f"scale={s['scale']:g}": s["success_rate"] for s in scales}}


def dimension(m: dict[str, Any]) -> dict[str, Any]:
    return {name: {"fgsm_accuracy": r["fgsm_accuracy"], "accuracy_drop": r["accuracy_drop"]}
            for name, r in m["models"].items()}
