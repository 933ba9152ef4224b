#!/usr/bin/env python3
"""Draws the benchmark's results (the JSON bench/run.py writes) as one PNG.

  plot.py RESULTS.json OUT.png

Needs matplotlib (scripts/deps.sh installs it into target/tools/venv)."""

import json
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CASES = [("1", "1 no mesh", "#7f7f7f", "o"), ("2", "2 Istio iptables", "#d62728", "s"),
         ("3", "3 meshlane", "#1f77b4", "^"), ("4", "4 meshlane + short path", "#2ca02c", "D"),
         ("5", "5 Envoy floor (no capture)", "#9467bd", "v")]


def size_label(size):
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def per_size(data, figure):
    sizes = data["config"]["sizes"]
    s = data["summary"].get(figure, {})
    out = {}
    for case, *_ in CASES:
        rows = [(size, s.get(str(size), {}).get(case)) for size in sizes]
        out[case] = [(size, e["median"], e["min"], e["max"]) for size, e in rows if e]
    return sizes, out


def line_panel(ax, data, figure, ylabel, title, logy=False):
    sizes, series = per_size(data, figure)
    for case, label, color, marker in CASES:
        pts = series[case]
        if not pts:
            continue
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
        ax.errorbar(xs, ys, yerr=err, label=label, color=color, marker=marker, capsize=3,
                    linewidth=1.5, markersize=5)
    ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([size_label(s) for s in sizes])
    ax.set_xlabel("message size")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)


def bar_panel(ax, data):
    s = data["summary"].get("conn_rate", {}).get("-", {})
    labels, values, colors, errs = [], [], [], [[], []]
    for case, label, color, _ in CASES:
        e = s.get(case)
        if not e:
            continue
        # The case number, then its name wrapped: five labels share the panel's width.
        number, _, name = label.partition(" ")
        labels.append(number + "\n" + textwrap.fill(name, 14))
        values.append(e["median"])
        errs[0].append(e["median"] - e["min"])
        errs[1].append(e["max"] - e["median"])
        colors.append(color)
    bars = ax.bar(labels, values, color=colors, yerr=errs, capsize=4)
    base = s.get("2", {}).get("median")
    floor = s.get("5", {}).get("median")
    for bar, v, up in zip(bars, values, errs[1]):
        text = f"{v:,.0f}" + (f"\n{v / base:.2f}x /2" if base else "") \
            + (f"\n{v / floor:.2f}x /5" if floor else "")
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, v + up), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 3), textcoords="offset points")
    ax.set_ylabel("connections/s")
    ax.set_title("connection setup rate (connect + 1 byte + close)")
    ax.margins(y=0.25)
    ax.grid(True, axis="y", alpha=0.3)


def setup_panel(ax, data):
    p = data["summary"].get("pod_setup")
    if not p:
        ax.set_visible(False)
        return
    rows = [("meshlane ADD", p["meshlane_add_ms"], "#1f77b4"),
            ("iptables-restore\n(Istio's rules)", p["iptables_restore_ms"], "#d62728")]
    width = 0.38
    for i, (label, st, color) in enumerate(rows):
        for j, (key, alpha) in enumerate((("p50", 1.0), ("p99", 0.5))):
            x = i + (j - 0.5) * width
            ax.bar(x, st[key], width, color=color, alpha=alpha)
            ax.annotate(f"{key} {st[key]:.2f}", (x, st[key]), ha="center", va="bottom",
                        fontsize=8, xytext=(0, 3), textcoords="offset points")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r[0] for r in rows])
    ax.set_ylabel("ms per pod")
    ax.set_title(f"pod setup cost over {p['meshlane_add_ms']['n']} pods (p50, p99)")
    ax.margins(y=0.2)
    ax.grid(True, axis="y", alpha=0.3)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        data = json.load(f)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    line_panel(axes[0][0], data, "tcp_lat", "one-way latency, µs (lower is better)",
               "qperf tcp_lat mean (median, min-max); hollow: sockperf p50")
    p50 = data["summary"].get("lat_p50", {})
    for case, label, color, marker in CASES:
        pts = [(int(size), cases[case]["median"]) for size, cases in p50.items() if case in cases]
        if pts:
            axes[0][0].plot([p[0] for p in pts], [p[1] for p in pts], linestyle="none",
                            marker=marker, markersize=9, markerfacecolor="none",
                            markeredgecolor=color, markeredgewidth=1.5)
    line_panel(axes[0][1], data, "tcp_bw", "MB/s (higher is better)",
               "qperf tcp_bw (median, min-max)", logy=True)
    bar_panel(axes[1][0], data)
    setup_panel(axes[1][1], data)
    axes[0][0].legend(fontsize=8)
    m = data["machine"]
    note = ""
    if data["summary"].get("short_path_in_build") is False:
        note = "\ncase 4: short path switched on, but this build has none (same code as case 3)"
    fig.suptitle(f"meshlane benchmark, {data['mode']} run {data['started']} — kernel "
                 f"{m['kernel']}, {m['cpus']} CPUs, {data['config']['reps']} repetition(s)"
                 + note, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
