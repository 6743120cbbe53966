"""``make bench``: run every benchmark, print each figure beside its baseline, and write
``var/bench/latest.json`` as a list of ``{figure, value, unit, baseline, ratio, target, met}``.

Each benchmark measures its own baseline in the same run, on the same machine, so the ratio
means something wherever it runs. Timing lives here, never in unit tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import cdrs, charging, concurrency, console, directory, http, ledger, rating, reports
from bench import sip as sip_suite
from bench.report import Figure

SUITES = {
    "concurrency": concurrency.run,
    "ledger": ledger.run,
    "directory": directory.run,
    "rating": rating.run,
    "charging": charging.run,
    "cdrs": cdrs.run,
    "reports": reports.run,
    "http": http.run,
    "console": console.run,
    "sip": sip_suite.run,
}


def _table(figures: list[Figure], title: str) -> Table:
    table = Table(title=title)
    for column in ("figure", "value", "unit", "baseline", "ratio", "target", "met"):
        table.add_column(
            column, justify="right" if column in {"value", "baseline", "ratio"} else "left"
        )
    for f in figures:
        table.add_row(
            f.figure,
            f"{f.value:,.0f}",
            f.unit,
            f"{f.baseline:,.0f}" if f.baseline else "",
            f"{f.ratio:.2f}" if f.ratio is not None else "",
            f.target,
            {True: "yes", False: "NO", None: ""}[f.met],
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("suites", nargs="*", choices=[*SUITES, []], help="default: all")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--out", type=Path, default=Path("var/bench/latest.json"))
    args = parser.parse_args(argv)
    console = Console()
    figures: list[Figure] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    names = args.suites or list(SUITES)
    began = time.monotonic()
    for name in names:
        console.print(f"[bold]{name}[/bold] ...")
        suite_began = time.monotonic()
        found = SUITES[name](quick=args.quick, say=console.print)
        console.print(f"{name}: {time.monotonic() - suite_began:,.0f} s")
        figures += found
        # Each suite's figures at once, and the file rewritten after each: a long run that is
        # stopped keeps what it measured.
        console.print(_table(found, f"{name}"))
        args.out.write_text(json.dumps([f.as_json() for f in figures], indent=2))
    if set(names) == set(SUITES) and not args.quick:
        # The whole suite is itself a figure: a full run must fit in ten minutes.
        elapsed = time.monotonic() - began
        figures.append(
            Figure(
                "make bench, every suite at full size",
                elapsed,
                "s",
                None,
                "<= 600 s",
                elapsed <= 600,
            )
        )
        args.out.write_text(json.dumps([f.as_json() for f in figures], indent=2))
    console.print(_table(figures, "benchmarks"))
    console.print(f"written to {args.out}")
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
