"""`synthetic://shapes?n=...&seed=...&split=...`: images of shapes with exact ground truth, and text about them.

Splits: `alt` (short, noisy web-style alt text; the default), `reference` (dense true captions), `sft-knowledge`,
`sft-instruction`, `sft-preference` (conversations of rising difficulty), `text` (text only), and the benchmarks
`shapes_caption`, `shapes_vqa`, `shapes_count`, `shapes_ocr`, `shapes_pope` (also written as VLMEvalKit TSV files).
Further parameters: `size` (a side or a range such as 224-448), `encoding` (png or jpeg), `shard` (records per
shard). The same URI always gives the same bytes.
"""

from sailvl.data.synthetic.benchmarks import COLUMNS, benchmark_spec
from sailvl.data.synthetic.generator import generate, record_id
from sailvl.data.synthetic.language import extract_facts, fact_key
from sailvl.data.synthetic.scene import COLOURS, POSITIONS, SHAPES, Scene
from sailvl.data.synthetic.spec import SPLITS, TRAIN_SPLITS, SyntheticSpec, SyntheticUriError, parse_synthetic_uri
from sailvl.data.synthetic.tsv import benchmark_rows, write_benchmark_tsv

__all__ = [
    "COLOURS",
    "COLUMNS",
    "POSITIONS",
    "SHAPES",
    "SPLITS",
    "TRAIN_SPLITS",
    "Scene",
    "SyntheticSpec",
    "SyntheticUriError",
    "benchmark_rows",
    "benchmark_spec",
    "extract_facts",
    "fact_key",
    "generate",
    "parse_synthetic_uri",
    "record_id",
    "write_benchmark_tsv",
]
