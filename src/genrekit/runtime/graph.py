"""The contract of an exported graph: what it reads and returns, and the format version of both.

:mod:`.export` writes graphs to it and :mod:`.onnx` runs them by it; neither imports the other for it.
"""

__all__ = ["INPUT_FEATURES", "INPUT_MUSICNN_LOGMEL", "TAGS_OUTPUT", "GRAPH_FORMAT"]

# What an exported graph reads (its ``genrekit.input``): the features of its config, or musicnn's log-mel patches.
INPUT_FEATURES = "features"
INPUT_MUSICNN_LOGMEL = "musicnn-logmel"
TAGS_OUTPUT = "tags"  # a musicnn graph's second output: musicnn's 100 tag scores per segment
GRAPH_FORMAT = 2
"""What an exported graph reads and returns; part of the export cache's key, so a graph cached before a change
(2: the ``tags`` output) is exported again."""
