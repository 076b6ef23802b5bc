"""The local runner: the same manifests a cluster runs, executed on this machine as processes.

`sailvl run` validates every resource, orders them by their references, and runs each through the entry
points the cluster uses (`torchrun -m sailvl.train`, `sailvl serve`, `sailvl curate`, `sailvl eval`), with
status, logs and free ports under a work folder (`.sailvl/` by default). Running it again resumes.
"""
