"""The stage trainer: `sailvl train --spec FILE` runs one TrainStage, alone or under torchrun.

The story is in `trainer.py` (set up, load, loop, save); what varies by distribution engine sits behind the
`Engine` interface in `engines/`; checkpoints, the data stream, the learning-rate schedule and the reporting
(metrics, progress, termination message) each have their own module. Importing this package never imports torch.
"""
