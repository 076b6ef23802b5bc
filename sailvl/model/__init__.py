"""Model: the InternVL architecture from transformers, built from a preset, components or a checkpoint;
freezing and export.

- `presets`: the `tiny` and `sail-vl-2b` architectures as `InternVLConfig`s.
- `build`: `build_model(spec)` from a TrainStage's ModelSpec: a preset (random weights), a preset assembled from
  vision and language checkpoints, or an InternVL checkpoint.
- `components`: the vision / projector / language split, freezing by `trainable`, parameter counts.
- `vocab`: the image tokens a language model's tokenizer gains, with mean-initialised embedding rows.
- `checkpoint`: load and export Hugging Face InternVL folders (model, tokenizer, image processor config).
"""
