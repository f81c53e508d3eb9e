"""The PrometheusRule's alerts, unit-tested with `promtool test rules`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULE = ROOT / "manifests" / "base" / "prometheusrule.yaml"
TESTS = Path(__file__).resolve().parents[1] / "promtool" / "alerts_test.yaml"


def _rules_file(tmp_path: Path) -> Path:
    spec = yaml.safe_load(RULE.read_text())["spec"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(spec))
    shutil.copy(TESTS, tmp_path / "alerts_test.yaml")
    return rules


def test_rules_are_valid(tmp_path: Path) -> None:
    rules = _rules_file(tmp_path)
    result = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_when_they_should_and_not_before(tmp_path: Path) -> None:
    _rules_file(tmp_path)
    result = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    spec = yaml.safe_load(RULE.read_text())["spec"]
    alerts = {r["alert"] for g in spec["groups"] for r in g["rules"] if "alert" in r}
    tested = {
        t["alertname"]
        for case in yaml.safe_load(TESTS.read_text())["tests"]
        for t in case["alert_rule_test"]
    }
    assert alerts == tested
