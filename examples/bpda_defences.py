"""Naive PGD against PGD through BPDA on two quantising input defences, on the MNIST files.

Trains a small CNN (standard training, 2 epochs) on the 17,435 MNIST training images of
``../shared/data/mnist``, puts BitDepthReduction(1) or JPEGCompression(30) in front of it, and
evaluates each defended model on the first 500 test images at Linf eps 0.3 twice: with the
front-end's own (zero or missing) gradients, and through BPDA. Writes a bar figure.

    python examples/bpda_defences.py [--data-dir ../shared/data/mnist] [--out docs/bpda-mnist.png]
"""

import argparse
import time

import torch
from torch import nn

from robustkernels.data import load_mnist
from robustkernels.defences import BitDepthReduction, JPEGCompression
from robustkernels.eval import evaluate
from robustkernels.machine import describe
from robustkernels.models import build_model
from robustkernels.train import fit, make_method


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--out", default="docs/bpda-mnist.png")
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    (x, y), (x_test, y_test) = load_mnist(args.data_dir, train=True), load_mnist(args.data_dir, train=False)
    x_test, y_test = x_test[:args.samples], y_test[:args.samples]
    torch.manual_seed(0)
    model = build_model("cnn", in_channels=1, image_size=28)
    fit(model, make_method("standard"), (x, y), epochs=2, batch_size=128, lr=1e-3, optimizer="adam", progress=False)
    model.eval()
    rows = []
    for front in (BitDepthReduction(1), JPEGCompression(30)):
        defended = nn.Sequential(front, model).eval()
        scores = {}
        for label, bpda in (("naive", False), ("BPDA", True)):
            tic = time.perf_counter()
            report = evaluate(defended, (x_test, y_test), eps=0.3, attacks=("pgd",), bpda=bpda, checks=False,
                              progress=False, generator=torch.Generator().manual_seed(0))
            scores[label] = report.attacks["pgd"].robust_accuracy.mean
            print(f"{type(front).__name__}: clean {report.clean_accuracy}, PGD-20 ({label}) "
                  f"{100 * scores[label]:.1f}% [{report.gradients}] {time.perf_counter() - tic:.0f} s")
        rows.append((f"{type(front).__name__}({front.bits if hasattr(front, 'bits') else front.quality})",
                     float(report.clean_accuracy.mean), scores["naive"], scores["BPDA"]))
    print(f"machine: {describe()}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.27
    for i, (_, clean, naive, bpda) in enumerate(rows):
        for j, (value, label, colour) in enumerate(((clean, "clean", "C2"), (naive, "PGD, naive gradients", "C0"),
                                                     (bpda, "PGD through BPDA", "C3"))):
            ax.bar(i + (j - 1) * width, 100 * value, width, color=colour, label=label if i == 0 else None)
            ax.text(i + (j - 1) * width, 100 * value + 1, f"{100 * value:.0f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(rows)), [r[0] for r in rows])
    ax.set(ylabel="accuracy (%)", ylim=(0, 130), title=f"MNIST CNN + front-end, eps 0.3, {len(y_test)} test images")
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
