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
    ncols = ncols or len(mats)
    nrows = -(-len(mats) // ncols)
    rows, cols = mats[0].shape
    width = max(2.2, cols * cell_size + 0.9)
    height = max(2.0, rows * cell_size + 0.8)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(width * ncols + 0.8, height * nrows + 0.3 * (nrows - 1)),
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
