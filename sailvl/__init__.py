"""sailvl: the SAIL-VL vision-language training recipe as Kubernetes-native software.

Importing this package is cheap: it never imports torch (the operator and the CLI's validation run
without it).
"""

__version__ = "0.1.0"
