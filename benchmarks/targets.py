"""The project's performance targets, checked against a ``robustkernels bench --json`` file.

    robustkernels bench --json bench.json && python benchmarks/targets.py bench.json

Each target is marked met or NOT met with the figure behind it; a target whose rows the run
did not measure (``--quick``, ``--no-e2e``, no ``--ops autoattack``) is left out.
"""

from __future__ import annotations

import argparse
import json

from robustkernels.bench.timing import format_table


def _min_speedup(rows) -> tuple[float, str]:
    low = min(rows, key=lambda r: r["speedup"])
    return low["speedup"], f"min {low['speedup']:.1f}x ({low['case']}, {low['dtype']})"


def _aa_standard(rows) -> tuple[bool, str]:
    met = all(r["peer_s"] / r["ours_s"] >= 3 and r["ours_acc"] <= r["peer_acc"] for r in rows)
    text = ", ".join(f"{r['peer_s'] / r['ours_s']:.2f}x ({100 * r['ours_acc']:.1f}% vs {100 * r['peer_acc']:.1f}%)"
                     for r in rows)
    return met, text


TARGETS = [  # (description, row filter, check -> (met, figure))
    ("PGD step >= 5x eager, every shape", lambda r: r.get("op") == "pgd_step",
     lambda rs: (_min_speedup(rs)[0] >= 5, _min_speedup(rs)[1])),
    ("PGD step >= 50% of copy bandwidth, large size", lambda r: r.get("op") == "pgd_step" and "large" in r["case"],
     lambda rs: (min(r["share_of_copy"] for r in rs) >= 0.5, f"min {min(r['share_of_copy'] for r in rs):.0%}")),
    ("LWTA fwd+bwd <= 1.5x ReLU", lambda r: r.get("op") == "lwta",
     lambda rs: (max(r["ours_ms"] / r["relu_ms"] for r in rs) <= 1.5,
                 f"{max(r['ours_ms'] / r['relu_ms'] for r in rs):.2f}x ReLU")),
    ("noisy weight fwd+bwd >= 2x the PNI authors' form", lambda r: r.get("op") == "noisy_weight",
     lambda rs: (_min_speedup(rs)[0] >= 2, _min_speedup(rs)[1])),
    ("zero bytes of noise kept for the backward", lambda r: r.get("op") == "noisy_weight",
     lambda rs: (max(r["kept_mib_ours"] for r in rs) < 0.01,
                 f"{max(r['kept_mib_ours'] for r in rs) * 2**20:.0f} bytes (eager {rs[0]['kept_mib_eager']:.1f} MiB)")),
    ("WRN-34-1 LWTA PGD-AT step >= 2x faster", lambda r: r.get("case") == "pgd_at_lwta",
     lambda rs: (rs[0]["speedup"] >= 2, f"{rs[0]['speedup']:.2f}x")),
    ("WRN-34-1 LWTA PGD-AT step peak memory <= 0.6x", lambda r: r.get("case") == "pgd_at_lwta",
     lambda rs: (rs[0]["peak_ratio"] <= 0.6, f"{rs[0]['peak_ratio']:.2f}x")),
    ("AA standard >= 3x faster than torchattacks at <= its robust accuracy",
     lambda r: r.get("case", "").startswith("AA standard") and r.get("peer_s") is not None, _aa_standard),
    ("AA fast >= 10x less time than standard, <= 0.5 point above it", lambda r: "fast_s" in r,
     lambda rs: (all(r["ratio"] >= 10 and r["gap_points"] <= 0.5 for r in rs),
                 "; ".join(f"{r['case']} seed {r.get('seed', 0)}: {r['ratio']:.1f}x, {r['gap_points']:+.1f} points"
                           for r in rs))),
    ("AA rand: batched EOT + active set >= 2x the sequential loop", lambda r: r.get("case", "").startswith("AA rand"),
     lambda rs: (rs[0]["sequential_s"] / rs[0]["ours_s"] >= 2, f"{rs[0]['sequential_s'] / rs[0]['ours_s']:.2f}x")),
]


def check_targets(result: dict) -> list[list[str]]:
    """``[target, "met" | "NOT met", figure]`` for each target the bench result measured."""
    rows = result.get("ops", []) + result.get("end_to_end", []) + result.get("autoattack", [])
    out = []
    for text, keep, check in TARGETS:
        selected = [r for r in rows if keep(r)]
        if selected:
            met, figure = check(selected)
            out.append([text, "met" if met else "NOT met", figure])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", help="the file written by robustkernels bench --json")
    args = parser.parse_args()
    with open(args.json) as f:
        result = json.load(f)
    print(f"{result.get('machine', '?')}{', quick sizes' if result.get('quick') else ''}")
    print(format_table(["target", "status", "measured"], check_targets(result)))


if __name__ == "__main__":
    main()
