"""The shared figure helpers: the pictures they draw match the data, and bad input is refused."""

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from llmlab.plotting import COLUMN_WIDTH_IN, show_head_split, show_heatmaps, show_kv_sharing


def split(x, n_head):
    T, C = x.shape
    return x.view(T, n_head, C // n_head).transpose(0, 1)


def cell_texts(fig):
    return [t.get_text() for t in fig.axes[0].texts]


def test_head_split_shows_every_number_twice_and_fits_the_column():
    T, C, H = 3, 8, 4
    x = 10 * torch.arange(T)[:, None] + torch.arange(C)
    fig = show_head_split(x, split(x, H))
    texts = cell_texts(fig)
    for value in x.flatten().tolist():
        assert texts.count(str(value)) == 2, f"{value} should appear in x and in its head"
    assert [f"head {h}" for h in range(H)] == [t for t in texts if t.startswith("head ")]
    assert fig.get_size_inches()[0] <= COLUMN_WIDTH_IN
    plt.close(fig)


@pytest.mark.parametrize(
    "x, heads, message",
    [
        (torch.zeros(3, 8), torch.zeros(4, 3, 3), r"x \(3, 8\) should be \(T, H \* d_k\)"),
        (torch.zeros(3, 8), torch.zeros(8, 3), "heads must be a 3-D"),
        (torch.zeros(24), torch.zeros(4, 3, 2), "x must be a 2-D"),
        (torch.zeros(1, 9), torch.zeros(9, 1, 1), "at most 8 heads"),
    ],
)
def test_head_split_refuses_shapes_that_do_not_fit(x, heads, message):
    with pytest.raises(ValueError, match=message):
        show_head_split(x, heads)


def test_kv_sharing_joins_each_query_head_to_its_group():
    fig = show_kv_sharing(8, (8, 2, 1), titles=["MHA", "GQA", "MQA"])
    for ax, n_kv in zip(fig.axes, (8, 2, 1)):
        labels = [t.get_text() for t in ax.texts]
        assert sum(label.startswith("kv") for label in labels) == n_kv
        assert sum(label.startswith("q") and label[1:].isdigit() for label in labels) == 8
        # one line per query head, from the query row (y=1) down to its KV head (y=0)
        # (query head, x of the KV head it reads): llmlab.model groups neighbours
        # (a group of query heads shares one), so query head h reads KV head h // (8 // n_kv)
        group = 8 // n_kv
        drawn = [tuple(line.get_xdata()) for line in ax.lines]
        assert drawn == [(h, (h // group + 0.5) * group - 0.5) for h in range(8)]
        assert f"KV cache {n_kv}/8" in ax.get_title(loc="left")
    assert fig.get_size_inches()[0] <= COLUMN_WIDTH_IN
    plt.close(fig)


@pytest.mark.parametrize(
    "n_head, n_kv_heads, message",
    [
        (8, (3,), "must divide n_head=8"),
        (8, (), "must divide n_head=8"),
        (0, (1,), "n_head must be an int from 1 to 16"),
        (True, (1,), "n_head must be an int"),
    ],
)
def test_kv_sharing_refuses_groups_that_do_not_divide(n_head, n_kv_heads, message):
    with pytest.raises(ValueError, match=message):
        show_kv_sharing(n_head, n_kv_heads)


def test_kv_sharing_needs_one_title_per_layout():
    with pytest.raises(ValueError, match="titles has 1 entries for 2 layouts"):
        show_kv_sharing(4, (4, 1), titles=["only one"])


def test_show_heatmaps_still_draws_a_single_matrix():
    fig = show_heatmaps(torch.eye(3), titles=["identity"])
    assert fig.axes[0].get_title() == "identity"
    plt.close(fig)


def test_heatmaps_never_exceed_the_book_column():
    """Four 12x12 panels side by side would be 13 in wide: they wrap into rows, and a single
    panel too wide for the column is scaled down to it."""

    fig = show_heatmaps([np.eye(12)] * 4, cell_size=0.25)
    assert fig.get_size_inches()[0] <= COLUMN_WIDTH_IN + 1e-9
    assert len({round(ax.get_position().y0, 3) for ax in fig.axes[:4]}) > 1  # more than one row
    fig = show_heatmaps(np.eye(40), cell_size=0.25)
    assert fig.get_size_inches()[0] <= COLUMN_WIDTH_IN + 1e-9
