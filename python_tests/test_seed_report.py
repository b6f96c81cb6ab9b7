"""`robustkernels demo --dataset cifar10`: the seed report's rows on the CIFAR-10 files (two rows,
one epoch, a few test images: the table's shape and honesty, not its figures)."""

from robustkernels.recipes.seed_report import ROWS, seed_report


def test_seed_report_rows_on_the_cifar10_files(shared_data):
    text = seed_report(str(shared_data / "cifar-10-batches-py"), epochs=1, samples=30, progress=False,
               rows=("label smoothing", "the same + PNI"))
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| model | clean | FGSM | PGD | CW | AutoAttack | certified |")
    smooth, pni = lines[1].split(" | "), lines[2].split(" | ")
    assert smooth[0] == "| label smoothing" and "(standard)" in smooth[5] and smooth[6].endswith("%")
    assert pni[0] == "| the same + PNI" and "(rand)" in pni[5] and pni[6] == "n/a (stochastic)"
    assert "±" in pni[1]  # stochastic: spread over passes
    assert len(ROWS) == 9  # the seed report's eight and the IBP row
