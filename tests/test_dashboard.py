"""The Grafana dashboard only queries metrics arbd exports (no panel silently empty)."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_dashboard_query_names_an_exported_family():
    dashboard = json.loads((ROOT / "packaging" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    source = (ROOT / "arbd" / "metrics.py").read_text()
    families = set(re.findall(r'"(arbd_[a-z_]+)"', source))
    used = {name for expr in exprs for name in re.findall(r"\barbd_[a-z_]+", expr)}
    for name in used:
        if name.startswith("arbd_process_"):
            continue  # prometheus-client's ProcessCollector, namespace "arbd"
        family = re.sub(r"_(bucket|count|sum|total)$", "", name)
        assert family in families, f"{name}: no such family in arbd/metrics.py"
