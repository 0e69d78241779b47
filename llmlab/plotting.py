"""One look for every figure in the course.

Heatmaps use cividis (readable with every common colour-vision deficiency, and in greyscale);
lines use the Okabe-Ito palette. Every axis says what it shows.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

HEATMAP_CMAP = "cividis"
# Okabe & Ito (2008), a palette distinguishable under the common colour-vision deficiencies.
COLORS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def use_course_style():
    """Matplotlib defaults shared by all chapters (call once per notebook)."""
    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "axes.prop_cycle": plt.cycler(color=COLORS),
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "image.cmap": HEATMAP_CMAP,
            "font.size": 10,
        }
    )


def _to_numpy(x):
    return (
        x.detach().float().cpu().numpy()
        if isinstance(x, torch.Tensor)
        else np.asarray(x, dtype=float)
    )


def show_heatmaps(
    matrices,
    titles=None,
    xlabels=None,
    ylabels=None,
    xlabel="key (attended to)",
    ylabel="query (attending)",
    ncols=None,
    vmin=0.0,  # attention weights live in [0, 1]; pass None to fit the data
    vmax=1.0,
    cell_size=0.32,
    annotate=False,
    colorbar_label="attention weight",
):
    """Draw one or more 2-D matrices (e.g. attention weights) side by side, sharing one colour scale.

    matrices: a 2-D array/tensor or a sequence of them. xlabels/ylabels: tick labels (e.g. tokens)
    shared by all panels. Returns the matplotlib Figure.
    """
    if isinstance(matrices, (torch.Tensor, np.ndarray)) and np.ndim(matrices) == 2:
        matrices = [matrices]
    mats = [_to_numpy(m) for m in matrices]
    if not mats or any(m.ndim != 2 for m in mats):
        raise ValueError("matrices must be a 2-D array or a non-empty sequence of 2-D arrays")
    if titles is not None and len(titles) != len(mats):
        raise ValueError(f"titles has {len(titles)} entries for {len(mats)} matrices")
    vmin = min(m.min() for m in mats) if vmin is None else vmin  # None: fit the data
    vmax = max(m.max() for m in mats) if vmax is None else vmax
    rows, cols = mats[0].shape
    width = max(2.2, cols * cell_size + 0.9)
    height = max(2.0, rows * cell_size + 0.8)
    if ncols is None:  # as many panels per row as fit the book's column
        ncols = len(mats)
        while ncols > 1 and width * ncols + 0.8 > COLUMN_WIDTH_IN:
            ncols -= 1
    nrows = -(-len(mats) // ncols)
    fig_w, fig_h = width * ncols + 0.8, height * nrows + 0.3 * (nrows - 1)
    shrink = min(1.0, COLUMN_WIDTH_IN / fig_w)  # never wider than the column (fonts keep size)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(fig_w * shrink, fig_h * shrink),
        squeeze=False,
        layout="constrained",  # keeps titles clear of the tick labels of the row above
    )
    image = None
    for i, ax in enumerate(axes.flat):
        if i >= len(mats):
            ax.axis("off")
            continue
        m = mats[i]
        image = ax.imshow(m, cmap=HEATMAP_CMAP, vmin=vmin, vmax=vmax, aspect="auto")
        ax.grid(False)
        if titles is not None:
            ax.set_title(titles[i], fontsize=10)
        if xlabels is not None:
            ax.set_xticks(range(len(xlabels)), xlabels, rotation=60, ha="right", fontsize=8)
        if ylabels is not None and i % ncols == 0:
            ax.set_yticks(range(len(ylabels)), ylabels, fontsize=8)
        elif ylabels is not None:
            ax.set_yticks([])
        if i // ncols == nrows - 1 and xlabel:
            ax.set_xlabel(xlabel)
        if i % ncols == 0 and ylabel:
            ax.set_ylabel(ylabel)
        if annotate:
            for (r, c), value in np.ndenumerate(m):
                shade = (value - vmin) / (vmax - vmin + 1e-12)
                ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if shade > 0.6 else "white")  # fmt: skip
    fig.colorbar(image, ax=axes, shrink=0.8, label=colorbar_label)
    return fig


# The book's text column at a 1280 px window is about 672 px wide: 6.7 inches at the course's
# 100 dpi. A figure wider than that is shrunk to fit, and its text with it; the browser test
# fails a figure shrunk more than 1.1x (its labels would shrink with it).
COLUMN_WIDTH_IN = 6.7


def _check_matrix(name, value, ndim):
    if not isinstance(value, (torch.Tensor, np.ndarray)) or np.ndim(value) != ndim:
        raise ValueError(f"{name} must be a {ndim}-D tensor or array, got {np.shape(value)}")
    return _to_numpy(value)


def _grid(ax, values, left, bottom, colors, fontsize=9):
    """Draw a matrix as labelled cells whose lower-left corner is at (left, bottom)."""
    rows, cols = values.shape
    for (r, c), value in np.ndenumerate(values):
        y = bottom + rows - 1 - r  # row 0 on top, as a printed tensor reads
        ax.add_patch(
            plt.Rectangle((left + c, y), 1, 1, facecolor=colors[c], edgecolor="white", alpha=0.8)
        )
        text = f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
        ax.text(left + c + 0.5, y + 0.5, text, ha="center", va="center", fontsize=fontsize)


def show_head_split(x, heads):
    """Picture how a (T, C) activation is cut into H heads of width d_k = C / H, and put back.

    x: (T, C), the layer's activations; heads: (H, T, d_k), what the split made of x. Cells are
    coloured by the head their feature column belongs to and labelled with their values, so the
    reader can follow each number; merging is the same picture read from right to left.
    Returns the matplotlib Figure.
    """
    x = _check_matrix("x", x, 2)
    heads = _check_matrix("heads", heads, 3)
    n_head, T, d_k = heads.shape
    if x.shape != (T, n_head * d_k):
        raise ValueError(
            f"shapes do not fit one split: x {x.shape} should be (T, H * d_k) = "
            f"{(T, n_head * d_k)} for heads {heads.shape} (H, T, d_k)"
        )
    if n_head > len(COLORS):
        raise ValueError(f"at most {len(COLORS)} heads can be told apart by colour, got {n_head}")
    C = n_head * d_k
    gap, arrow = 0.6, 3.4
    split_left = C + arrow
    split_width = n_head * d_k + (n_head - 1) * gap
    x_range, y_range = (-2.6, split_left + split_width + 0.2), (-0.2, T + 1.8)
    aspect = (y_range[1] - y_range[0]) / (x_range[1] - x_range[0])
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, COLUMN_WIDTH_IN * aspect))
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1)  # square cells filling the column
    _grid(ax, x, 0, 0, [COLORS[c // d_k] for c in range(C)])
    for h in range(n_head):
        left = split_left + h * (d_k + gap)
        _grid(ax, heads[h], left, 0, [COLORS[h]] * d_k)
        ax.text(left + d_k / 2, T + 0.25, f"head {h}", ha="center", fontsize=9)
    ax.text(C / 2, T + 1.2, f"(T, C) = {x.shape}", ha="center", fontsize=10)
    ax.text(
        split_left + split_width / 2, T + 1.2, f"(H, T, d_k) = {heads.shape}", ha="center",
        fontsize=10,
    )  # fmt: skip
    ax.annotate(
        "", xy=(C + arrow - 0.3, T / 2), xytext=(C + 0.3, T / 2),
        arrowprops=dict(arrowstyle="<->", lw=1.5),
    )  # fmt: skip
    ax.text(C + arrow / 2, T / 2 + 0.3, "split", ha="center", va="bottom", fontsize=9)
    ax.text(C + arrow / 2, T / 2 - 0.3, "merge", ha="center", va="top", fontsize=9)
    for t in range(T):
        ax.text(-0.3, T - 1 - t + 0.5, f"token {t}", ha="right", va="center", fontsize=9)
    ax.set_xlim(*x_range)
    ax.set_ylim(*y_range)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig


def show_kv_sharing(n_head, n_kv_heads, titles=None):
    """Draw which key/value head each query head reads, one row per layout (MHA, GQA, MQA).

    n_head: query heads; n_kv_heads: a sequence of KV-head counts, each dividing n_head. Query
    head h reads KV head h // (n_head // n_kv), the grouping of `llmlab.model`.
    Returns the matplotlib Figure.
    """
    if isinstance(n_head, bool) or not isinstance(n_head, int) or not 1 <= n_head <= 16:
        raise ValueError(f"n_head must be an int from 1 to 16, got {n_head!r}")
    n_kv_heads = list(n_kv_heads)
    bad = [k for k in n_kv_heads if not isinstance(k, int) or k < 1 or n_head % k]
    if not n_kv_heads or bad:
        raise ValueError(f"each of n_kv_heads must divide n_head={n_head}; these do not: {bad}")
    if titles is not None and len(titles) != len(n_kv_heads):
        raise ValueError(f"titles has {len(titles)} entries for {len(n_kv_heads)} layouts")
    fig, axes = plt.subplots(
        len(n_kv_heads), 1, figsize=(COLUMN_WIDTH_IN, 1.45 * len(n_kv_heads)), squeeze=False
    )
    for row, (ax, n_kv) in enumerate(zip(axes[:, 0], n_kv_heads)):
        group = n_head // n_kv
        kv_x = [(g + 0.5) * group - 0.5 for g in range(n_kv)]  # centred under its group
        for h in range(n_head):
            color = COLORS[(h // group) % len(COLORS)]
            ax.plot([h, kv_x[h // group]], [1, 0], color=color, linewidth=1.2, zorder=1)
            ax.add_patch(
                plt.Rectangle((h - 0.35, 0.85), 0.7, 0.5, facecolor=color, alpha=0.45, zorder=2)
            )
            ax.text(h, 1.1, f"q{h}", ha="center", va="center", fontsize=9, zorder=3)
        for g, x in enumerate(kv_x):
            color = COLORS[g % len(COLORS)]
            ax.add_patch(
                plt.Rectangle((x - 0.45, -0.35), 0.9, 0.5, facecolor="white", edgecolor=color,
                              linewidth=2, zorder=2)
            )  # fmt: skip
            ax.text(x, -0.1, f"kv{g}", ha="center", va="center", fontsize=9, zorder=3)
        title = titles[row] if titles else f"{n_head} query heads, {n_kv} KV head(s)"
        ax.set_title(f"{title}: KV cache {n_kv}/{n_head} of multi-head", fontsize=10, loc="left")
        ax.set_xlim(-1.6, n_head - 0.4)
        ax.set_ylim(-0.5, 1.5)
        ax.text(-0.7, 1.1, "queries", ha="right", va="center", fontsize=9)
        ax.text(-0.7, -0.1, "keys, values", ha="right", va="center", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig
