"""`sailvl serve`: an OpenAI-compatible server for an exported checkpoint on CPU, the local stand-in for vLLM.

It answers `/v1/chat/completions` (text and `image_url` data URIs), `/v1/models`, `/health` and `/metrics` the
way vLLM does, so curation and evaluation workers talk to either without knowing which.
"""
