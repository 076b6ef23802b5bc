"""Curation: CurationRun workers and their finalize step (`sailvl curate`).

client (async OpenAI-compatible requests with retries) · steps and answers (pure: prompts, parsing, verdicts) ·
images and signatures (per-record decode, hashes, MinHash) · pipeline (one record through the steps) · runner (a
worker's shards) · dedup and finalize (the global pass, final shards, manifest) · shards (the output folder).
"""
