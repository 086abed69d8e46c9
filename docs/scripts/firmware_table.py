"""The firmware tables of docs/microcontrollers.md, from `cnnedge firmware` reports.

    python docs/scripts/firmware_table.py runs/firmware/fashion_mnist runs/firmware/cifar10

Each folder is a `cnnedge firmware -o FOLDER` output (one report.json per target); prints one
markdown table of size, arena, instructions and estimate, and one of on-device parity.
"""

import json
import sys
from pathlib import Path

KIB = 1024


def rows(folders):
    from cnnedge.firmware.targets import names

    order = {name: i for i, name in enumerate(names())}
    for folder in folders:
        found = [json.loads(f.read_text()) for f in Path(folder).glob("[!.]*/report.json")]
        for r in sorted(found, key=lambda r: order.get(r["target"], len(order))):
            yield Path(folder).name, r


def main() -> None:
    reports = list(rows(sys.argv[1:]))
    print(
        "| model | target | flash KiB (model + TFLM + app + C run-time) | RAM KiB (arena + "
        "stack + heap + other) | arena used B | instructions / inference | est. ms @ MHz |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in reports:
        fl, ram = r["flash"], r["ram"]
        flash = (
            f"{fl['total'] / KIB:.1f} ({fl['model'] / KIB:.1f} + {fl['tflm'] / KIB:.1f} + "
            f"{fl['app'] / KIB:.1f} + {fl['runtime'] / KIB:.1f})"
            if fl
            else "– (host)"
        )
        other = ram.get("total", 0) - ram.get("arena", 0) - ram.get("stack", 0) - ram.get("heap", 0)
        mem = (
            f"{ram['total'] / KIB:.1f} ({ram['arena'] / KIB:.1f} + {ram['stack'] / KIB:.1f} + "
            f"{ram['heap'] / KIB:.1f} + {other / KIB:.1f})"
            if ram
            else "–"
        )
        ins = f"{r['instructions'] / 1e6:.2f} M" if r["instructions"] else "–"
        est = f"{r['estimate_ms']:.1f} @ {r['clock_mhz']}" if r["estimate_ms"] is not None else "–"
        print(f"| {name} | {r['target']} | {flash} | {mem} | {r['arena_used']:,} | {ins} | {est} |")
    print()
    print(
        "| model | target | kernels | images | top-1 agreement | max step diff | accuracy device / LiteRT |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in reports:
        p = r.get("parity")
        if p:
            print(
                f"| {name} | {r['target']} | {r['kernels']} | {p['images']} | "
                f"{100 * p['top1_agreement']:.1f} % | {p['max_step_diff']} | "
                f"{100 * p['accuracy_device']:.2f} % / {100 * p['accuracy_litert']:.2f} % |"
            )
    first = reports[0][1] if reports else {}
    print(
        f"\nDate {first.get('date')}, host CPU {first.get('host_cpu')}, TFLM "
        f"{first.get('tflm_commit', '')[:12]}, {first.get('compiler')}."
    )


if __name__ == "__main__":
    main()
