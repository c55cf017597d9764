"""The one scenario engine of the simulators (plugins/simulators/scenario.py): shapes,
episodes, outages and the seeded wobble, at given times."""

from __future__ import annotations

import pytest

from plugins.simulators.scenario import (
    NOMINAL,
    HalfSine,
    Pulse,
    Ramp,
    Scenario,
    Wave,
    leakage,
    overheat,
)


def test_shapes_at_given_times():
    assert HalfSine(100).level(50) == pytest.approx(1) and HalfSine(100).level(100) == 0
    assert [Pulse(100, 0.2).level(t) for t in (0, 19, 20, 119)] == [1, 1, 0, 1]
    assert [Pulse(100, 0.5, 0.5).level(t) for t in (10, 50, 99)] == [0, 1, 1]
    assert Wave(60).level(15) == pytest.approx(1) and Wave(60).level(45) == pytest.approx(0)
    ramp = Ramp(delay=10, up=10, hold=10, down=10, every=0)
    assert [ramp.level(t) for t in (5, 15, 25, 35, 45, 1000)] == [0, 0.5, 1, 0.5, 0, 0]


def test_named_scenarios_over_a_period():
    hot = Scenario.periodic("overheat", 100)
    assert hot.value("temperature", "T1", 0) == 30 and hot.value("temperature", "T1", 50) == 95
    assert hot.value("temperature", "T2", 50, 0.0) == NOMINAL["temperature"][0]
    leak = Scenario.periodic("leakage", 50)
    assert leak.value("residual_current", "L2", 5, 1.0) == 460  # every channel, peak + swing
    assert leak.value("residual_current", "L1", 20, -1.0) == 27  # normal: 30 - 3
    flaky = Scenario.periodic("flaky", 100)
    assert not flaky.silent(10) and flaky.silent(60)
    assert Scenario.periodic("silent", 100).silent(0)
    assert not Scenario.periodic("normal", 100).silent(0)
    with pytest.raises(ValueError, match="not a scenario"):
        Scenario("flood")
    with pytest.raises(ValueError, match="positive"):
        Scenario.periodic("normal", 0)


def test_energy_grows_and_the_wobble_is_seeded():
    sc = Scenario(seed="a")
    assert sc.value("active_energy", "", 3600) == pytest.approx(12006.4)
    same = Scenario(seed="a")
    other = Scenario(seed="b")
    series = [sc.value("voltage", "A", t) for t in range(0, 40, 5)]
    assert series == [same.value("voltage", "A", t) for t in range(0, 40, 5)]
    assert series != [other.value("voltage", "A", t) for t in range(0, 40, 5)]
    assert all(218 <= v <= 222 for v in series) and len(set(series)) == len(series)


def test_episodes_of_a_simulator_with_its_own_peaks():
    shape = Wave(60)
    hot = Scenario("overheat", shape, episodes=(overheat(shape, base=25.0),))
    assert hot.value("temperature", "T1", 15) == pytest.approx(95)
    assert hot.value("temperature", "T1", 45) == pytest.approx(25)
    leak = Scenario("leakage", shape, episodes=(leakage(shape, peak=600, swing=0, base=30),))
    assert leak.value("residual_current", "L1", 15, 1.0) == pytest.approx(600)
