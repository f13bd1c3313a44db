"""`cascade-explorer cache info|clear`: the bank's signal store (derived data; see core/store.py)."""

from __future__ import annotations

from .common import say


def add_parser(sub) -> None:
    p = sub.add_parser("cache", help="show or empty a bank's signal store (stored confidences and temperatures)")
    p.add_argument("action", choices=["info", "clear", "fill"],
                   help="info: what is stored; clear: delete it; fill: compute what is missing (default criterion)")
    p.add_argument("--bank", help="bank folder (default: the shipped default bank)")
    p.add_argument("--json", action="store_true", help="info as one JSON object")


def run(args) -> int:
    from cascade_explorer.core.analysis import open_bank
    from cascade_explorer.core.jsonsafe import dumps
    from cascade_explorer.core.store import SignalStore

    bank = open_bank(args.bank)
    store = SignalStore()
    if args.action == "clear":
        freed = store.clear(bank)
        say(f"removed the signal store of {bank.path} ({freed / 1e6:.1f} MB)" if freed else
            f"no signal store for {bank.path}")
        return 0
    if args.action == "fill":
        computed = store.fill(bank, progress=True)
        say(f"{computed} entr{'y' if computed == 1 else 'ies'} computed into {store.root(bank)}")
        return 0
    info = store.info(bank)
    if args.json:
        say(dumps(info))
        return 0
    say(f"signal store of {bank.path}: {info['root']}")
    if not info["exists"]:
        say("  empty (filled on first use, or with `cascade-explorer cache fill`)")
        return 0
    say(f"  {info['signals']} signal entr{'y' if info['signals'] == 1 else 'ies'}, {info['correct']} correctness, "
        f"{info['temperatures']} temperature(s), {info['accuracy_summaries']} accuracy summar"
        f"{'y' if info['accuracy_summaries'] == 1 else 'ies'}, {info['bytes'] / 1e6:.1f} MB")
    for split, models in info["models"].items():
        have = len(models)
        total = len(bank.models_for(split)) if split in bank.splits else have
        say(f"  {split}: {have} of {total} models")
    return 0
