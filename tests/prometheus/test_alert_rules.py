"""The chart's alerts, as rendered, checked and unit-tested by promtool: each fires when its text says and stays
quiet when it must (a slow start, a quiet cluster, one kind's events hiding another's stall)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.prometheus.conftest import render_chart, write_rules

pytestmark = pytest.mark.prometheus

OPERATOR = 'job="sailvl", namespace="lab"'  # with honorLabels a resource's series keep its namespace


def _stage_phase(name: str, phase: str, values: str) -> dict[str, str]:
    series = f'sailvl_resource_phase{{{OPERATOR}, kind="TrainStage", name="{name}", phase="{phase}"}}'
    return {"series": series, "values": values}


def _last_progress(name: str, values: str) -> dict[str, str]:
    return {"series": f'sailvl_stage_last_progress_timestamp_seconds{{{OPERATOR}, name="{name}"}}', "values": values}


def _stalled(name: str, value: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "warning", "job": "sailvl", "namespace": "lab", "name": name},
        "exp_annotations": {
            "summary": f"TrainStage lab/{name} made no progress for 30m",
            "description": f"The stage is Running but its step has not advanced for {value}: a hung rank, a stuck "
            "data loader or a rank 0 whose metrics cannot be read. "
            f"`kubectl describe ts {name} -n lab` shows the Running condition's reason.",
        },
    }


def _watch(kind: str, value: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "warning", "kind": kind},
        "exp_annotations": {
            "summary": f"The sailvl operator's {kind} watch is {value} behind the API server",
            "description": f"Changes to {kind} resources have not reached the operator, so they are not acted on; "
            "restarting the operator pod re-lists everything.",
        },
    }


# Times are minutes from the start of the test (Unix time 0); the stall threshold is 30m, the watch's 5m.
TESTS: list[dict[str, Any]] = [
    {
        "name": "a failed stage is named with its own namespace",
        "interval": "1m",
        "input_series": [_stage_phase("ho-fail", "Failed", "1x10")],
        "alert_rule_test": [
            {
                "eval_time": "5m",
                "alertname": "SailvlStageFailed",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "critical",
                            "job": "sailvl",
                            "namespace": "lab",
                            "kind": "TrainStage",
                            "name": "ho-fail",
                            "phase": "Failed",
                        },
                        "exp_annotations": {
                            "summary": "TrainStage lab/ho-fail failed",
                            "description": "The stage failed after its restarts; `kubectl describe ts ho-fail -n lab` "
                            "shows why.",
                        },
                    }
                ],
            }
        ],
    },
    {
        "name": "stalled stages: a slow start and a new stage are not stalled; a silent rank 0 and a hung step are",
        "interval": "1m",
        "input_series": [
            # Running from 0; its first step only at 25m (loading took long), then every 5m.
            _stage_phase("slow-start", "Running", "1x60"),
            _last_progress("slow-start", "0x24 1500x4 1800x4 2100x4 2400x4 2700x4 3000x4 3300x4 3600x4 3900x4 4200x4"),
            # Running from 0; rank 0 never answers, so the step never advances from the start.
            _stage_phase("silent", "Running", "1x60"),
            _last_progress("silent", "0x60"),
            # Advancing until 10m, then stuck.
            _stage_phase("hung", "Running", "1x60"),
            _last_progress("hung", "0x4 300x5 600x50"),
            # Starts running at 50m: a brand-new series.
            {
                "series": f'sailvl_resource_phase{{{OPERATOR}, kind="TrainStage", name="new", phase="Running"}}',
                "values": "_x49 1x10",
            },
            {
                "series": f'sailvl_stage_last_progress_timestamp_seconds{{{OPERATOR}, name="new"}}',
                "values": "_x49 3000x10",
            },
            # Stuck, but Succeeded since 20m: not Running, so not stalled.
            _stage_phase("done", "Running", "1x19 _x40"),
            _stage_phase("done", "Succeeded", "_x19 1x40"),
            _last_progress("done", "0x60"),
        ],
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": "SailvlStageStalled", "exp_alerts": []},
            {"eval_time": "34m", "alertname": "SailvlStageStalled", "exp_alerts": [_stalled("silent", "34m 0s")]},
            {
                "eval_time": "43m",
                "alertname": "SailvlStageStalled",
                "exp_alerts": [_stalled("hung", "33m 0s"), _stalled("silent", "43m 0s")],
            },
            {
                "eval_time": "59m",
                "alertname": "SailvlStageStalled",
                "exp_alerts": [_stalled("hung", "49m 0s"), _stalled("silent", "59m 0s")],
            },
        ],
    },
    {
        "name": "watches: a quiet cluster is not stalled; one kind's lag fires for that kind alone",
        "interval": "1m",
        "input_series": [
            # No watch event for an hour on any kind (a quiet cluster), and nothing behind.
            {
                "series": 'sailvl_operator_watch_last_event_timestamp_seconds{job="sailvl", kind="TrainStage"}',
                "values": "0x60",
            },
            {"series": 'sailvl_operator_watch_lag_seconds{job="sailvl", kind="TrainStage"}', "values": "0x60"},
            {"series": 'sailvl_operator_watch_lag_seconds{job="sailvl", kind="EvalSuite"}', "values": "0x60"},
            # The CurationRun watch falls behind at 10m, while the others keep receiving events.
            {
                "series": 'sailvl_operator_watch_lag_seconds{job="sailvl", kind="CurationRun"}',
                "values": "0x9 0+60x50",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": "SailvlOperatorWatchStalled", "exp_alerts": []},
            {"eval_time": "15m", "alertname": "SailvlOperatorWatchStalled", "exp_alerts": []},
            {
                "eval_time": "18m",
                "alertname": "SailvlOperatorWatchStalled",
                "exp_alerts": [_watch("CurationRun", "8m 0s")],
            },
            {
                "eval_time": "60m",
                "alertname": "SailvlOperatorWatchStalled",
                "exp_alerts": [_watch("CurationRun", "50m 0s")],
            },
        ],
    },
    {
        "name": "curation drop rate: a run that keeps nothing fires; one that keeps most does not",
        "interval": "1m",
        "input_series": [
            # The kept counter starts at 0, so the ratio exists even when nothing is kept.
            {
                "series": 'sailvl_curate_records_total{namespace="lab", sailvl_name="bad", outcome="kept", reason=""}',
                "values": "0x40",
            },
            {
                "series": 'sailvl_curate_records_total{namespace="lab", sailvl_name="bad", outcome="dropped", '
                'reason="judge_below_min"}',
                "values": "0+10x40",
            },
            {
                "series": 'sailvl_curate_records_total{namespace="lab", sailvl_name="good", outcome="kept", reason=""}',
                "values": "0+9x40",
            },
            {
                "series": 'sailvl_curate_records_total{namespace="lab", sailvl_name="good", outcome="dropped", '
                'reason="too_short"}',
                "values": "0+1x40",
            },
        ],
        "alert_rule_test": [
            {
                "eval_time": "35m",
                "alertname": "SailvlCurationDropRateHigh",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "warning", "namespace": "lab", "sailvl_name": "bad"},
                        "exp_annotations": {
                            "summary": "CurationRun lab/bad drops or rejects most records",
                            "description": "More than 0.8 of the records were dropped or rejected over 15 minutes; "
                            "check the judge and the servers.",
                        },
                    }
                ],
            }
        ],
    },
]


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rules(render_chart(), tmp_path_factory.mktemp("rules"))


def test_promtool_checks_the_rendered_rules(promtool: Path, rules: Path) -> None:
    done = subprocess.run([str(promtool), "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout


def test_every_alert_fires_when_it_says_and_only_then(promtool: Path, rules: Path) -> None:
    cases = rules.with_name("rules_test.yaml")
    cases.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m", "tests": TESTS}))
    done = subprocess.run(
        [str(promtool), "test", "rules", cases.name], cwd=rules.parent, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = {t["alertname"] for case in TESTS for t in case["alert_rule_test"]}
    rendered = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    assert alerts == rendered  # every alert the chart ships has its cases


def test_the_cases_can_fail(promtool: Path, rules: Path) -> None:
    """promtool really compares: the silent stage expected quiet at 34m is reported."""
    wrong = [
        dict(TESTS[1], alert_rule_test=[{"eval_time": "34m", "alertname": "SailvlStageStalled", "exp_alerts": []}])
    ]
    cases = rules.with_name("wrong_test.yaml")
    cases.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m", "tests": wrong}))
    done = subprocess.run(
        [str(promtool), "test", "rules", cases.name], cwd=rules.parent, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1 and 'name="silent"' in done.stdout + done.stderr
