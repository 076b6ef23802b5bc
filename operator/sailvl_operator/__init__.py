"""sailvl_operator: the kopf operator that runs sailvl.io resources on a cluster.

It imports `sailvl.api` and nothing heavier: no torch, no transformers, no other `sailvl` module.
"""
