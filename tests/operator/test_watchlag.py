"""How far a watch is behind the API server: the pure tracker, and the operator measuring it against the emulator
(a quiet cluster is current; an event the watch loses shows as lag until a later one arrives)."""

from __future__ import annotations

import pytest

from sailvl_operator.watchlag import WatchLag
from tests.operator.conftest import Kube, OperatorThread, eventually, settle
from tests.operator.kubeflow import stage


def _item(name: str, version: str, namespace: str = "lab") -> dict[str, object]:
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": version}}


def test_a_quiet_watch_that_delivered_everything_has_no_lag() -> None:
    lag = WatchLag()
    lag.deliver("TrainStage", "lab", "a", "5")
    for now in (0.0, 600.0, 3600.0):  # no event for an hour: nothing is behind
        lag.listed("TrainStage", [_item("a", "5")], now)
        assert lag.lag("TrainStage", now) == 0.0


def test_an_undelivered_version_lags_from_the_first_list_that_shows_it_until_a_delivery() -> None:
    lag = WatchLag()
    lag.deliver("TrainStage", "lab", "a", "5")
    lag.listed("TrainStage", [_item("a", "6")], 100.0)
    assert lag.lag("TrainStage", 100.0) == 0.0
    lag.listed("TrainStage", [_item("a", "9")], 160.0)  # written again since: the clock keeps running
    assert lag.lag("TrainStage", 200.0) == 100.0
    assert lag.lag("CurationRun", 200.0) == 0.0  # judged per kind
    lag.deliver("TrainStage", "lab", "a", "7")  # the watch moves: it is alive
    assert lag.lag("TrainStage", 200.0) == 0.0


def test_a_resource_gone_from_the_api_stops_lagging() -> None:
    lag = WatchLag()
    lag.listed("EvalSuite", [_item("a", "3"), _item("b", "4", namespace="other")], 10.0)
    assert lag.lag("EvalSuite", 70.0) == 60.0
    lag.listed("EvalSuite", [_item("b", "4", namespace="other")], 70.0)
    lag.deliver("EvalSuite", "other", "b", "4")
    assert lag.lag("EvalSuite", 80.0) == 0.0
    lag.deliver("EvalSuite", "lab", "a", None, deleted=True)
    assert lag.delivered == {("EvalSuite", "other", "b"): "4"}


@pytest.mark.k8s
async def test_the_operator_measures_a_lost_event_as_watch_lag(kube: Kube, operator_factory: object) -> None:
    operator: OperatorThread = await operator_factory(watch_probe_interval=0.3)  # type: ignore[operator]
    await kube.create(stage("quiet"))
    gauge = operator.metrics.registry.get_sample_value
    await settle(1.5)
    assert gauge("sailvl_operator_watch_lag_seconds", {"kind": "TrainStage"}) == 0.0
    kube.emulator.change_unwatched("sailvl.io/v1alpha1/trainstages", "lab", "quiet", {"team": "vision"})
    await eventually(
        lambda: (gauge("sailvl_operator_watch_lag_seconds", {"kind": "TrainStage"}) or 0) >= 1.0, what="lag"
    )
    assert gauge("sailvl_operator_watch_lag_seconds", {"kind": "EvalSuite"}) == 0.0
    await kube.patch("TrainStage", "quiet", {"metadata": {"labels": {"team": "language"}}})  # a delivered event
    await eventually(
        lambda: gauge("sailvl_operator_watch_lag_seconds", {"kind": "TrainStage"}) == 0.0, what="caught up"
    )
