"""End-to-end pipelines: train, prune at initialization then train, one-shot prune.

Each pipeline is a plain function taking a config dataclass; the command line only
parses arguments and calls them.
"""
