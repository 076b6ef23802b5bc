"""Evaluation: the SAIL-VL paper's benchmarks (VLMEvalKit-style) and the synthetic shapes_* benchmarks, asked of an
OpenAI-compatible server and scored the way the community scores them.

Items: `items` (files in the VLMEvalKit TSV layout), `loading` (data and output URIs, synthetic://shapes).
Benchmarks: `base` (the `Benchmark` interface), `choice`, `yesno`, `vqa`, `shapes`, gathered by name in `registry`;
`prompts` and `extract` (what the model is asked and how a reply is read), `scorers` (the metrics, pure), `judge`
(an LLM judge for replies no rule can read). Running: `client` (async OpenAI client), `store` (resumable per-item
predictions), `runner` (one suite), `report` (results, groups, termination message), `exporter` (Prometheus metrics),
`command` and `cli` (`sailvl eval`).

Importing this package loads nothing heavy: `sailvl.cli` imports `sailvl.eval.cli` to register the subcommand.
"""
