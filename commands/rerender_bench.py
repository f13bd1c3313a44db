"""Dashboard re-render benchmark: server time of the Explorer's rerun after a threshold slider move.

    python -m cascade_explorer.commands.rerender_bench [--bank PATH] [--repeats 30] [--json]

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
    parser.add_argument("--bank", default=str(DEFAULT_BANK_PATH), help="bank folder (default: the shipped bank)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    bank = Path(args.bank)
    if not is_bank(bank):
        say(f"rerender_bench: no bank at {bank} (build it, or pass --bank)", err=True)
        return 2
    from cascade_explorer.dashboard.bench_rerender import measure

    result = measure(bank, args.repeats)
    if args.json:
        say(dumps(result))
    else:
        say(f"Explorer re-render after a slider move on {result['bank']} ({' -> '.join(result['models'])}), "
              f"{result['repeats']} moves: median {result['rerender_ms_median']} ms, "
              f"p90 {result['rerender_ms_p90']} ms, max {result['rerender_ms_max']} ms "
              f"(target <= {result['target_ms']} ms); first render {result['first_render_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
