"""ALiBi's slopes and bias (llmlab.positions), against the numbers in Press et al. (2022)."""

import pytest
import torch

from llmlab.positions import alibi_bias, alibi_slopes


def test_slopes_for_eight_heads_are_powers_of_one_half():
    expected = torch.tensor([2.0**-k for k in range(1, 9)], dtype=torch.float64)
    assert torch.equal(alibi_slopes(8), expected)


def test_slopes_for_twelve_heads_follow_the_paper_recipe():
    # Eight slopes of the 8-head recipe, then every other slope of the 16-head recipe.
    sixteen = [2.0 ** (-(k + 1) / 2) for k in range(16)]
    expected = torch.tensor([2.0**-k for k in range(1, 9)] + sixteen[0::2][:4])
    assert torch.allclose(alibi_slopes(12), expected.double())


def test_bias_is_minus_slope_times_distance_and_masks_later_keys():
    bias = alibi_bias(n_heads=4, n_positions=5)
    assert bias.shape == (4, 5, 5)
    slopes = alibi_slopes(4)
    for h in range(4):
        for i in range(5):
            for j in range(5):
                if j > i:
                    assert bias[h, i, j] == float("-inf")
                else:
                    assert bias[h, i, j] == pytest.approx(-slopes[h].item() * (i - j))


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"n_heads": 0, "n_positions": 4}, ValueError, "n_heads"),
        ({"n_heads": 2.0, "n_positions": 4}, TypeError, "n_heads"),
        ({"n_heads": 2, "n_positions": 0}, ValueError, "n_positions"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, names):
    with pytest.raises(error, match=names):
        alibi_bias(**kwargs)
