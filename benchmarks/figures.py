"""Figures 5–7 of the paper from a benchmark's run directories (matplotlib, PNG).

* Fig. 5 — the discovered architecture: both encoders' cells, the interaction, fusion and transformation
  cells, each box naming the chosen operator (AV-NAS Arch-1, the larger code length, first seed).
* Fig. 6 — P@K, R@K and the Hamming-radius P-R curve at each code length for AV-NAS and the best rows.
* Fig. 7 — t-SNE of AV-NAS's 64-bit codes of the retrieval set, ten classes, single-label videos.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402 (after the backend choice)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from avnas_nni.metrics import pr_curve, precision_recall_at_k  # noqa: E402
from avnas_nni.runs import RunDir  # noqa: E402
from benchmarks._common import run_codes  # noqa: E402

__all__ = ["write_figures", "draw_architecture", "plot_curves", "plot_tsne"]

logger = logging.getLogger(__name__)

AVNAS_ROW = "AV-NAS (Arch-1)"
_ENCODER_CELLS = ("M1", "U1", "M2", "U2", "D1", "U3", "M3", "D2", "U4")


def _runs(results: pd.DataFrame, row: str, bits: int) -> list[str]:
    return list(results.loc[(results["row"] == row) & (results["bits"] == bits), "run"])


def draw_architecture(arch: dict[str, str], path: Path, title: str) -> Path:
    """Fig. 5: one box per cell with its chosen operator, wired as Eq. 3–14 (encoders → I → F → T → hash)."""
    modalities = [m for m in ("visual", "audio") if f"{m}/M1" in arch]
    fig, ax = plt.subplots(figsize=(14, 1.6 + 1.6 * len(modalities)))
    ax.set_axis_off()
    colours = {"M": "#cfe2f3", "U": "#fff2cc", "D": "#d9ead3", "I": "#f4cccc", "F": "#ead1dc", "T": "#d0e0e3"}

    def box(x: float, y: float, cell: str, op: str) -> None:
        ax.add_patch(FancyBboxPatch((x - 0.45, y - 0.3), 0.9, 0.6, boxstyle="round,pad=0.02",
                                    facecolor=colours.get(cell[0], "#eeeeee"), edgecolor="#444444"))
        ax.text(x, y + 0.12, cell, ha="center", va="center", fontsize=8, weight="bold")
        ax.text(x, y - 0.1, op, ha="center", va="center", fontsize=7)

    rows_y = {m: len(modalities) - 1 - i for i, m in enumerate(modalities)}
    for modality, y in rows_y.items():
        ax.text(-0.9, y, modality, ha="right", va="center", fontsize=9, style="italic")
        for i, cell in enumerate(_ENCODER_CELLS):
            box(i, y, cell, arch[f"{modality}/{cell}"])
            if i:
                ax.annotate("", (i - 0.45, y), (i - 0.55, y), arrowprops={"arrowstyle": "->"})
    centre, x = (len(modalities) - 1) / 2, len(_ENCODER_CELLS) + 0.5
    tail = [c for c in ("I1", "I2") if c in arch]
    for i, cell in enumerate(tail):
        box(x, len(modalities) - 1 - i, cell, arch[cell])
    x += 1.3 if tail else 0
    for cell in [c for c in ("F", "SF", "T") if c in arch]:
        box(x, centre, cell, arch[cell])
        x += 1.2
    ax.text(x, centre, "mean → FC → tanh\n(hash codes)", ha="center", va="center", fontsize=8)
    ax.set_xlim(-1.5, x + 1)
    ax.set_ylim(-0.8, len(modalities) - 0.2)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(results: pd.DataFrame, path: Path, bits: list[int], top: int = 4) -> Path:
    """Fig. 6: P@K, R@K and P-R curves per code length for AV-NAS and the ``top − 1`` best other rows."""
    fig, axes = plt.subplots(len(bits), 3, figsize=(14, 3.8 * len(bits)), squeeze=False)
    for r, b in enumerate(bits):
        at = results[(results["bits"] == b) & (results["table"] == "2")]
        ranked = at.groupby("row", sort=False)["test_mAP@100"].mean().sort_values(ascending=False).index.tolist()
        names = ([AVNAS_ROW] if AVNAS_ROW in ranked else []) + [n for n in ranked if n != AVNAS_ROW][: top - 1]
        for name in names:
            run = _runs(results, name, b)[0]
            query, labels, database, db_labels = run_codes(run)
            ks = np.unique(np.linspace(1, min(1000, len(database)), 40).astype(int))
            at_k = precision_recall_at_k(query, database, labels, db_labels, ks=ks.tolist())
            radius = pr_curve(query, database, labels, db_labels)
            style = {"lw": 2.2} if name == AVNAS_ROW else {"lw": 1.2}
            axes[r, 0].plot(at_k["k"], at_k["precision"], label=name, **style)
            axes[r, 1].plot(at_k["k"], at_k["recall"], label=name, **style)
            axes[r, 2].plot(radius["recall"], radius["precision"], marker=".", label=name, **style)
        for c, (xlabel, ylabel) in enumerate((("K", "P@K"), ("K", "R@K"), ("recall", "precision"))):
            axes[r, c].set_xlabel(xlabel)
            axes[r, c].set_ylabel(ylabel)
            axes[r, c].set_title(f"{ylabel} ({b} bits)" if c < 2 else f"P-R by Hamming radius ({b} bits)")
            axes[r, c].grid(alpha=0.3)
        axes[r, 0].legend(fontsize=8)
    fig.suptitle("Fig. 6 — retrieval curves on the test queries (first seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_tsne(run: str, path: Path, n_classes: int = 10, seed: int = 0, max_points: int = 1000) -> Path:
    """Fig. 7: t-SNE of a run's codes for single-label retrieval videos of its first ``n_classes`` classes."""
    _, _, codes, labels = run_codes(run)
    single = labels.sum(axis=1) == 1
    classes = labels.argmax(axis=1)
    keep = np.flatnonzero(single & (classes < n_classes))[:max_points]
    embedded = TSNE(n_components=2, perplexity=min(30.0, (len(keep) - 1) / 3), init="pca",
                    random_state=seed).fit_transform(codes[keep].astype(np.float32))
    fig, ax = plt.subplots(figsize=(6.5, 6))
    scatter = ax.scatter(embedded[:, 0], embedded[:, 1], c=classes[keep], cmap="tab10", s=10)
    ax.legend(*scatter.legend_elements(), title="class", fontsize=7, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"Fig. 7 — t-SNE of {codes.shape[1]}-bit AV-NAS codes ({len(keep)} videos, {n_classes} classes)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_figures(results: pd.DataFrame, out: Path, bits: list[int]) -> list[Path]:
    """All three figures that the results allow; returns the written paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = [plot_curves(results, out / "fig6_curves.png", bits)]
    big = max(bits)
    runs = _runs(results, AVNAS_ROW, big)
    if runs:
        record = RunDir(runs[0]).read_arch()
        written.append(draw_architecture(record["arch"], out / "fig5_architecture.png",
                                         f"Fig. 5 — AV-NAS (Arch-1) architecture found at {big} bits"))
        written.append(plot_tsne(runs[0], out / "fig7_tsne.png"))
    else:
        logger.info("no AV-NAS (Arch-1) row: Fig. 5 and Fig. 7 skipped")
    return written
