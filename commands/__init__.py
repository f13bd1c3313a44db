"""The `cascade-explorer` command line: argument parsing, text/JSON/CSV output and the mapping from
library parameter names to flags, over the library in `cascade_explorer.core` (datasette-style:
each command builds the library objects and calls them; the library never parses flags or prints).

One module per subcommand (`evaluate`, `pareto`, `import_bank`, `precompute`, `predict`,
`dashboard`, `bench`), each with `add_parser(subparsers)` and `run(args) -> exit status`; `cli`
wires them together. The stand-alone benchmarks and builders (`live_bench`, `rerender_bench`,
`default_bank`) run as `python -m cascade_explorer.commands.<name>`.
"""
