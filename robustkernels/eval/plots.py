"""The report's figures (matplotlib, Agg backend): accuracy vs eps, confidence histograms, and a
grid of adversarial examples."""

from __future__ import annotations

import os


def write_plots(report, folder) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, curve in report.curves.items():
        points = sorted((float(e), a) for e, a in curve.items())
        ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", label=name)
    ax.axvline(report.eps, color="grey", linestyle=":", label="eps")
    ax.set(xlabel=f"eps ({report.norm})", ylabel="robust accuracy (%)", ylim=(0, 100), title="accuracy vs eps")
    ax.legend(fontsize=8)
    written.append(_save(fig, folder, "curves.png"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    probs = np.asarray(report.clean_probabilities)
    correct = np.asarray(report.clean_correct, dtype=bool)
    bins = np.linspace(0, 1, 21)
    ax.hist(probs, bins=bins, alpha=0.6, label="all")
    ax.hist(probs[correct], bins=bins, alpha=0.6, label="correctly classified")
    ax.set(xlabel="predicted-class probability", ylabel="samples", title="clean confidence")
    ax.legend(fontsize=8)
    written.append(_save(fig, folder, "histogram.png"))

    ex = report.examples
    if ex.get("images"):
        images = np.asarray(ex["images"])  # [K, C, H, W]
        k = len(images)
        cols = min(8, k)
        rows = -(-k // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.9 * rows + 0.5), squeeze=False)
        clean_correct = report.clean_correct or [True] * k
        for i, axis in enumerate(axes.flat):
            axis.axis("off")
            if i >= k:
                continue
            img = images[i].transpose(1, 2, 0)
            axis.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img.clip(0, 1), cmap="gray", vmin=0, vmax=1)
            label, predicted = ex["labels"][i], ex["predictions"][i]
            if not clean_correct[i]:  # wrong before the attack: not the attack's doing
                title, color = f"{label}->{predicted}\nwrong clean", "grey"
            else:
                title, color = f"{label}->{predicted}", "green" if predicted == label else "red"
            axis.set_title(title, fontsize=8, color=color, pad=2)
        fig.suptitle(f"{ex.get('attack', '')} examples: label->prediction; green robust, red fooled, "
                     "grey wrong before the attack", fontsize=9)
        written.append(_save(fig, folder, "examples.png", top=1 - 0.45 / fig.get_figheight()))
    return written


def _save(fig, folder, name, top: float = 1.0) -> str:
    import matplotlib.pyplot as plt

    path = os.path.join(folder, name)
    fig.tight_layout(rect=(0, 0, 1, top))  # top < 1 leaves room for a suptitle
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
