"""Dashboard re-render benchmark: server time of the Explorer's rerun after a threshold slider move.

    python -m cascade_explorer.commands.rerender_bench [--bank PATH ...] [--repeats 30] [--pages] [--json]

Without --bank: the shipped default bank. Each --bank adds a bank; the default bank is always
measured first, so a big bank's figures print next to the default bank's (issue 10). --pages also
times each page's first render in a new session.

Measured with Streamlit's AppTest in this process (`cascade_explorer.dashboard.bench_rerender.measure`).
"""

from __future__ import annotations

from cascade_explorer.commands.common import say

import argparse
import sys
from pathlib import Path

from cascade_explorer.core.bank import DEFAULT_BANK_PATH, is_bank
from cascade_explorer.core.jsonsafe import dumps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", action="append", default=[],
                        help="bank folder; repeat for several (the shipped default bank is always measured too)")
    parser.add_argument("--pages", action="store_true", help="also each page's first render in a new session")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    banks = [Path(DEFAULT_BANK_PATH)] + [Path(b) for b in args.bank if Path(b).resolve() != Path(DEFAULT_BANK_PATH).resolve()]
    for bank in banks:
        if not is_bank(bank):
            say(f"rerender_bench: no bank at {bank} (build it, or pass --bank)", err=True)
            return 2
    from cascade_explorer.dashboard.bench_rerender import first_renders, measure

    results = []
    for bank in banks:
        result = measure(bank, args.repeats)
        if args.pages:
            result["pages"] = first_renders(bank)["first_render_s"]
        results.append(result)
        if not args.json:
            say(f"Explorer re-render after a slider move on {result['bank']} ({' -> '.join(result['models'])}), "
                f"{result['repeats']} moves: median {result['rerender_ms_median']} ms, "
                f"p90 {result['rerender_ms_p90']} ms, max {result['rerender_ms_max']} ms "
                f"(target <= {result['target_ms']} ms); first render {result['first_render_s']} s, then "
                f"{result['bank_opening_s']} s opening the bank in the background")
            if args.pages:
                say("  first render per page in a new session (target <= 1 s): "
                    + ", ".join(f"{page} {seconds} s" for page, seconds in result["pages"].items()))
    if args.json:
        say(dumps(results if len(results) > 1 else results[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
