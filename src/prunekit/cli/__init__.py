"""The ``prunekit`` command line."""
