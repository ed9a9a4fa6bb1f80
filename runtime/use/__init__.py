"""Using a trained model as the course does (docs/use.md): one module per command — `generate` (decoding),
`sample` (and interpolate), `saliency`, `attack`, `neighbors`, `attention`, `boundary` — plus `runner`
(running part of a graph from given node values), `plots` (pictures) and `common` (what they share)."""
