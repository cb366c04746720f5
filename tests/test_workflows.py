"""The GitHub workflows run what the project promises (read, not executed)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def steps(workflow: str) -> list[str]:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / workflow).read_text())
    return [step.get("run", "") for job in data["jobs"].values() for step in job["steps"]]


def test_latest_versions_workflow_is_weekly_and_upgrades_before_testing() -> None:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / "latest.yml").read_text())
    # PyYAML reads the key `on` as True.
    triggers = data.get("on", data.get(True))
    assert triggers["schedule"][0]["cron"].split()[-1] == "1", "weekly, on Mondays"
    runs = steps("latest.yml")
    upgrade = next(i for i, run in enumerate(runs) if "--upgrade" in run and "-r requirements.txt" in run)
    assert "--upgrade-strategy eager" in runs[upgrade]
    assert runs.index("make test-fast") > upgrade
