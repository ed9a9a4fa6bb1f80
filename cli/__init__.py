"""The `specc` command line, the top layer: argument handling, printing and exit codes, one module per
command family (cli/main.py holds the parser and the dispatch). It imports `compiler` and `runtime`;
neither imports it (docs/architecture.md; tests/test_layers.py enforces the direction)."""
