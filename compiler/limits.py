"""Hard limits on what a spec (and a `--set` value) may make the compiler do.

Each is far above what a real network needs and low enough that a mistaken or hostile spec is refused
in well under a second, with its own message at the YAML position, instead of hanging or filling memory.
docs/spec-language.md ("Limits") lists them for users; keep the two in step.
"""
from __future__ import annotations

# -- the YAML text ----------------------------------------------------------------------------
SPEC_BYTES = 2_000_000          # a spec is text written by hand
ALIASED = 100_000               # values copied by alias expansion: stops "billion laughs"
YAML_DEPTH = 100                # nesting of maps and lists

# -- numbers and sizes (YAML values, --set values, every value an expression produces) --------
INT_BITS = 63                   # integers lie strictly between -2**63 and 2**63 (int64)
STR_CHARS = 10_000              # characters in a string
LIST_ITEMS = 10_000             # items in a list, nested lists' items included
FORMAT_WIDTH = 1_000            # a width or precision in a '%...' format

# -- the expression evaluator -----------------------------------------------------------------
EXPR_CHARS = 1_000              # the text inside one ${...}
EXPR_DEPTH = 32                 # nesting of an expression's syntax tree
EXPONENT = 64                   # |b| in a ** b
EXPR_STEPS = 1_000_000          # work for one expression: nodes visited + items produced
TOTAL_STEPS = 20_000_000        # work for every expression of one compilation together

# -- expansion ----------------------------------------------------------------------------------
REPEAT = 10_000                 # `repeat:` of one layer
NODES = 100_000                 # nodes of the expanded graph (blocks and repeats included)
OUTPUTS = 10_000                # output ports of one node (e.g. the chunks of `split`)
NAME_CHARS = 200                # characters in a layer's `name:` (a 100,000-character name made `specc
                                # check` print its summary row by row: over a million characters)
ARANGE = 10_000_000            # values of one `arange` (its length comes from its attributes)

# -- messages -----------------------------------------------------------------------------------
MESSAGE_CHARS = 2_000           # one error message or hint; longer ones are cut in the middle
ERRORS = 100                    # errors reported for one spec; the rest are counted
