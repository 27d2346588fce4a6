import math

import pytest

from prunekit.errors import ConfigError
from prunekit.masks.schedule import stage_sparsities

KINDS = ["exponential", "polynomial", "cubic", "linear", "geometric"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stages", [1, 2, 3, 15])
@pytest.mark.parametrize("start", [0.0, 0.3])
def test_increasing_above_start_and_ends_exactly_at_target(kind, stages, start):
    values = stage_sparsities(0.98, stages, kind, start=start)
    assert len(values) == stages
    assert values[-1] == 0.98
    assert values[0] > start
    assert all(b > a for a, b in zip(values, values[1:], strict=False))


def test_one_stage_is_the_target():
    for kind in KINDS:
        assert stage_sparsities(0.9, 1, kind) == [0.9]


def test_exponential_is_chitas_formula():
    target, base, stages = 0.95, 0.1, 6
    c = 2 ** (stages - 1) / (2 ** (stages - 1) - 1)
    expected = [base + (target - base) * c * (1 - 0.5**t) for t in range(stages)]
    assert stage_sparsities(target, stages, "exponential", base=base) == pytest.approx(expected)
    assert stage_sparsities(target, 2, "exponential", base=base) == [0.1, 0.95]


def test_cubic_polynomial_linear_geometric_formulas():
    s, b, T = 0.9, 0.2, 5
    cubic = [s + (b - s) * (1 - t / (T - 1)) ** 3 for t in range(T)]
    assert stage_sparsities(s, T, "cubic", base=b) == pytest.approx(cubic)
    square = [s + (b - s) * (1 - t / (T - 1)) ** 2 for t in range(T)]
    assert stage_sparsities(s, T, "polynomial", base=b, power=2) == pytest.approx(square)
    assert stage_sparsities(s, T, "linear", start=0.4) == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
    geometric = stage_sparsities(s, T, "geometric")
    densities = [1 - x for x in geometric]
    ratios = [b / a for a, b in zip([1.0] + densities, densities, strict=False)]
    assert ratios == pytest.approx([0.1 ** (1 / T)] * T)


def test_default_base_is_a_tenth_of_the_way():
    assert stage_sparsities(0.9, 3, "exponential", start=0.5)[0] == pytest.approx(0.54)
    assert stage_sparsities(0.98, 3, "cubic")[0] == pytest.approx(0.098)


def test_explicit_list_is_validated():
    assert stage_sparsities(0.9, [0.5, 0.8, 0.9], start=0.2) == [0.5, 0.8, 0.9]
    assert stage_sparsities(0.9, [0.9]) == [0.9]
    assert stage_sparsities(0.9, (0.5, 0.9 + 1e-12), "explicit")[-1] == 0.9
    bad = {
        "end at the target": [0.5, 0.8],
        "strictly increasing": [0.5, 0.5, 0.9],
        "start above": [0.2, 0.9],
        "empty": [],
    }
    for message, stages in bad.items():
        with pytest.raises(ConfigError, match=message):
            stage_sparsities(0.9, stages, start=0.2)
    with pytest.raises(ConfigError, match="kind='explicit'"):
        stage_sparsities(0.9, [0.5, 0.9], "linear")
    with pytest.raises(ConfigError, match="in \\[0, 1\\)"):
        stage_sparsities(0.9, [1.5, 0.9])


def test_bad_settings_name_the_problem():
    with pytest.raises(ConfigError, match="unknown stage schedule"):
        stage_sparsities(0.9, 3, "cosine")
    with pytest.raises(ConfigError, match="above the sparsity the weights already have"):
        stage_sparsities(0.5, 3, start=0.6)
    with pytest.raises(ConfigError, match="at least one stage"):
        stage_sparsities(0.9, 0)
    with pytest.raises(ConfigError, match="base sparsity"):
        stage_sparsities(0.9, 3, "exponential", start=0.3, base=0.2)
    with pytest.raises(ConfigError, match="strictly increasing"):
        stage_sparsities(0.9, 80, "exponential", base=0.1)  # 2⁻ᵗ underflows the steps
    assert math.isclose(stage_sparsities(0.9, 3, "linear", base=0.3)[0], 0.5)
