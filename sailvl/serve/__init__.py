"""`sailvl serve`: an OpenAI-compatible server for an exported checkpoint on CPU, the local stand-in for vLLM.

It answers `/v1/chat/completions` (text and `image_url` data URIs), `/v1/models`, `/health` and `/metrics` the
way vLLM does, so curation and evaluation workers talk to either without knowing which.
"""

# Greedy requests generated together at most (vLLM's `--max-num-seqs`); 16 keeps a CPU batch's latency low.
DEFAULT_MAX_NUM_SEQS = 16
