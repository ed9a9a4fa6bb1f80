"""specc on PyTorch: `specc export-torch` (codegen: a readable standalone file) and `--backend torch`
(build: the same source executed in memory). codegen imports nothing from torch."""
