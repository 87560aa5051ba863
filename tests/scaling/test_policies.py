from __future__ import annotations

import itertools
import math

import pytest

from eventmon import ConfigurationError
from eventmon.scaling.policies import ProportionalPolicy, StepPolicy, make_policy


def cpu(v: float | None) -> dict[str, float | None]:
    return {"cpu_percent": v}


def run(policy, clock, current: int, readings, step: float = 15.0) -> list[int]:
    """Feed readings every `step` seconds, applying each recommendation."""
    out = []
    for r in readings:
        current = policy.recommend(current, cpu(r)).desired
        out.append(current)
        clock.advance(step)
    return out


# ----------------------------------------------------------------- step policy


def test_step_thresholds_and_hysteresis_band(clock):
    p = StepPolicy(scale_down_stabilization=0, clock=clock)
    assert p.recommend(4, cpu(70.1)).desired == 5
    assert p.recommend(4, cpu(70.0)).desired == 4  # "above 70", not at
    assert p.recommend(4, cpu(50)).desired == 4
    assert p.recommend(4, cpu(30.0)).desired == 4  # "below 30", not at
    assert p.recommend(4, cpu(29.9)).desired == 3


def test_step_defaults_are_the_specified_ones():
    p = StepPolicy()
    assert (p.min_instances, p.max_instances) == (2, 20)
    assert (p.scale_up_above, p.scale_down_below, p.step) == (70.0, 30.0, 1)
    assert p.scale_down_stabilization == 300.0


def test_step_climbs_one_per_check_and_stops_at_max(clock):
    p = StepPolicy(scale_down_stabilization=0, clock=clock)
    assert run(p, clock, 2, [95] * 25) == [*range(3, 21), 20, 20, 20, 20, 20, 20, 20]


def test_step_never_below_min_whatever_the_load(clock):
    p = StepPolicy(scale_down_stabilization=0, clock=clock)
    assert run(p, clock, 5, [0, 0, 0, 0, 0, 0]) == [4, 3, 2, 2, 2, 2]


def test_out_of_range_current_is_clamped_back(clock):
    p = StepPolicy(clock=clock)
    assert p.recommend(1, cpu(50)).desired == 2
    assert p.recommend(35, cpu(50)).desired == 20
    assert p.recommend(35, cpu(99)).desired == 20


def test_oscillating_load_does_not_flap(clock):
    # Load alternating around the thresholds: up on every peak, never down
    # inside the 300 s window, so the count only rises.
    p = StepPolicy(clock=clock)
    counts = run(p, clock, 4, [80, 20, 80, 20, 80, 20, 80, 20])
    assert counts == [5, 5, 6, 6, 7, 7, 8, 8]
    assert all(b >= a for a, b in itertools.pairwise(counts))


def test_scale_down_waits_for_the_stabilization_window(clock):
    p = StepPolicy(clock=clock)  # 300 s window
    assert p.recommend(6, cpu(50)).desired == 6  # a "hold at 6" recommendation at t=0
    clock.advance(15)
    for _ in range(19):  # t = 15 ... 285: the hold is still inside the window
        rec = p.recommend(6, cpu(5))
        assert rec.desired == 6
        assert "stabilization" in rec.reason
        clock.advance(15)
    clock.advance(15)  # t = 315: every recommendation of the last 300 s says 5
    assert p.recommend(6, cpu(5)).desired == 5


def test_scale_up_stabilization_uses_the_lowest_recent_recommendation(clock):
    p = StepPolicy(scale_up_stabilization=60, scale_down_stabilization=0, clock=clock)
    assert p.recommend(3, cpu(50)).desired == 3
    clock.advance(30)
    assert p.recommend(3, cpu(90)).desired == 3  # a hold 30 s ago bounds the rise
    clock.advance(31)
    assert p.recommend(3, cpu(90)).desired == 4


def test_cooldowns(clock):
    p = StepPolicy(
        scale_down_stabilization=0, scale_up_cooldown=60, scale_down_cooldown=120, clock=clock
    )
    assert p.recommend(3, cpu(90)).desired == 4
    clock.advance(30)
    rec = p.recommend(4, cpu(90))
    assert rec.desired == 4
    assert "cooling down" in rec.reason
    clock.advance(31)
    assert p.recommend(4, cpu(90)).desired == 5  # 61 s after the last change
    clock.advance(100)
    assert p.recommend(5, cpu(5)).desired == 5  # 100 s < 120 s
    clock.advance(21)
    assert p.recommend(5, cpu(5)).desired == 4


def test_a_change_made_by_someone_else_starts_the_cooldown(clock):
    p = StepPolicy(scale_down_stabilization=0, scale_down_cooldown=60, clock=clock)
    assert p.recommend(5, cpu(50)).desired == 5
    clock.advance(15)
    assert p.recommend(8, cpu(5)).desired == 8  # the count jumped (an operator, a floor)
    clock.advance(61)
    assert p.recommend(8, cpu(5)).desired == 7


@pytest.mark.parametrize("bad", [None, math.nan, math.inf, -math.inf, -1.0, "80", True, object()])
def test_bad_inputs_hold_the_current_count(clock, bad):
    for p in (StepPolicy(clock=clock), ProportionalPolicy(clock=clock)):
        rec = p.recommend(7, {"cpu_percent": bad})
        assert rec.desired == 7
        assert rec.held
        assert "holding" in rec.reason


def test_bad_input_still_respects_the_bounds(clock):
    p = StepPolicy(clock=clock)
    assert p.recommend(40, cpu(math.nan)).desired == 20
    assert p.recommend(0, {}).desired == 2


def test_bad_input_does_not_disturb_stabilization(clock):
    p = StepPolicy(scale_down_stabilization=0, clock=clock)
    assert p.recommend(4, cpu(None)).desired == 4
    assert p.recommend(4, cpu(90)).desired == 5


def test_other_metric_name(clock):
    p = StepPolicy(metric="queue", scale_up_above=100, scale_down_below=10, clock=clock)
    assert p.recommend(3, {"queue": 500.0, "cpu_percent": 0.0}).desired == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale_up_above": 30, "scale_down_below": 70},
        {"scale_up_above": 50, "scale_down_below": 50},
        {"min_instances": 0},
        {"min_instances": 5, "max_instances": 4},
        {"min_instances": 2.5},
        {"step": 0},
        {"scale_down_stabilization": -1},
        {"scale_up_cooldown": math.nan},
        {"metric": ""},
    ],
)
def test_step_configuration_mistakes(kwargs):
    with pytest.raises(ConfigurationError):
        StepPolicy(**kwargs)


# ------------------------------------------------------------ proportional policy


@pytest.mark.parametrize(
    ("n", "value", "target", "expected"),
    [
        (4, 90.0, 50.0, 8),  # ceil(4 * 1.8) = 8
        (3, 100.0, 70.0, 5),  # ceil(4.2857) = 5
        (10, 35.0, 70.0, 5),  # ceil(5.0) = 5
        (10, 20.0, 70.0, 3),  # ceil(2.857) = 3
        (3, 77.0, 70.0, 3),  # ratio 1.1: within tolerance 0.1
        (3, 63.0, 70.0, 3),  # ratio 0.9: within tolerance
        (3, 77.7, 70.0, 4),  # ratio 1.11: outside
        (7, 70.0, 70.0, 7),
        (5, 0.0, 70.0, 2),  # no load: min
        (4, 1000.0, 70.0, 20),  # clamped to max
    ],
)
def test_hpa_formula(clock, n, value, target, expected):
    p = ProportionalPolicy(target=target, scale_down_stabilization=0, clock=clock)
    rec = p.recommend(n, cpu(value))
    assert rec.desired == expected
    assert rec.metric == value


def test_hpa_formula_against_a_direct_computation(clock):
    p = ProportionalPolicy(target=60, tolerance=0.1, max_instances=500, scale_down_stabilization=0)
    for n in range(2, 40):
        for v in range(0, 200, 7):
            ratio = v / 60
            want = n if abs(ratio - 1) <= 0.1 else math.ceil(n * ratio - 1e-9)
            want = max(2, min(500, want))
            assert p.recommend(n, cpu(float(v))).desired == want, (n, v)


def test_proportional_scale_down_takes_the_max_over_the_window(clock):
    p = ProportionalPolicy(target=50, clock=clock)  # 300 s scale-down window
    assert p.recommend(10, cpu(50)).desired == 10
    clock.advance(100)
    assert p.recommend(10, cpu(40)).desired == 10  # raw 8, held by the 10 at t=0
    clock.advance(100)
    assert p.recommend(10, cpu(10)).desired == 10  # raw 2
    clock.advance(101)
    assert p.recommend(10, cpu(10)).desired == 8  # the 10 left; max(8, 2, 2) = 8
    clock.advance(100)
    assert p.recommend(8, cpu(10)).desired == 2


def test_proportional_configuration_mistakes():
    with pytest.raises(ConfigurationError, match="target"):
        ProportionalPolicy(target=0)
    with pytest.raises(ConfigurationError, match="tolerance"):
        ProportionalPolicy(tolerance=-0.1)


def test_make_policy_selects_by_one_argument():
    assert isinstance(make_policy("step"), StepPolicy)
    p = make_policy("proportional", min_instances=3, max_instances=9)
    assert isinstance(p, ProportionalPolicy)
    assert (p.min_instances, p.max_instances) == (3, 9)
    custom = StepPolicy()
    assert make_policy(custom) is custom
    with pytest.raises(ConfigurationError, match="'step', 'proportional'"):
        make_policy("linear")
