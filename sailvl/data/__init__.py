"""Data: sources (parquet, jsonl, webdataset, synthetic://), tiling, templates, packing and mixtures.

Everything the trainer, the curation workers and the evaluator feed the model goes through this layer.
"""
