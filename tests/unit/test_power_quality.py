"""Power quality: unbalance from three magnitudes on reference vectors, the 95 % value,
each index's limit."""

from __future__ import annotations

import cmath
import math

import pytest

from hub.analysis.power_quality import (
    frequency_deviation,
    p95,
    thd,
    unbalance,
    unbalance_from_magnitudes,
    voltage_deviation,
)

A = cmath.exp(2j * math.pi / 3)


def phases(u1: complex, u2: complex) -> tuple[float, float, float]:
    """Magnitudes of three phasors with positive sequence u1, negative u2, no zero."""
    return abs(u1 + u2), abs(A * A * u1 + A * u2), abs(A * u1 + A * A * u2)


@pytest.mark.parametrize("ratio,angle", [(0.02, 0.0), (0.02, 1.1), (0.04, 2.5),
                                         (0.005, -0.7), (0.10, 0.3)])
def test_unbalance_from_magnitudes_recovers_the_negative_sequence(ratio, angle):
    a, b, c = phases(400.0, 400.0 * ratio * cmath.exp(1j * angle))
    assert unbalance_from_magnitudes(a, b, c) == pytest.approx(ratio * 100, abs=1e-6)


def test_balanced_and_known_magnitudes():
    assert unbalance_from_magnitudes(380, 380, 380) == pytest.approx(0.0, abs=1e-6)
    # line voltages as a closed triangle, their sequence components computed directly
    for a, b, c in ((380, 380, 372.4), (400, 390, 410), (231, 225, 219)):
        cos_c = (a * a + b * b - c * c) / (2 * a * b)  # the angle between sides a and b
        vab = complex(a, 0)
        vbc = -b * cmath.exp(-1j * math.acos(cos_c))  # head to tail: vab + vbc + vca = 0
        vca = -(vab + vbc)
        assert abs(vca) == pytest.approx(c)
        u1 = abs(vab + A * vbc + A * A * vca)
        u2 = abs(vab + A * A * vbc + A * vca)
        ratio = min(u1, u2) / max(u1, u2) * 100  # the sequence naming depends on rotation
        assert unbalance_from_magnitudes(a, b, c) == pytest.approx(ratio, abs=1e-6)


def test_the_95_percent_value_leaves_out_the_largest_5_percent():
    values = list(range(1, 101))  # 1..100
    assert p95(values) == 95
    assert p95([3.0]) == 3.0


def test_each_index_against_its_limit():
    ok = unbalance([1.0] * 95 + [3.9] * 5)
    assert ok.passed and ok.p95 == 1.0 and ok.above_share == pytest.approx(0.05)
    short = unbalance([1.0] * 99 + [4.5])
    assert short.passed is False  # the maximum is above the short-time 4 %
    assert thd([4.9] * 10).passed and not thd([5.1] * 10).passed
    assert thd([3.5] * 10, nominal_kv=10).passed and not thd([4.5] * 10, nominal_kv=10).passed
    assert frequency_deviation([50.1, 49.85, 50.0]).passed
    assert not frequency_deviation([50.3] * 3).passed
    single = voltage_deviation([220 * 0.92] * 20, 220, three_phase=False)  # −8 %
    assert single.passed and single.low == pytest.approx(-8.0)
    three = voltage_deviation([380 * 0.92] * 20, 380, three_phase=True)
    assert three.passed is False and three.above_share == 1.0
    assert voltage_deviation([], 220, False).passed is None
