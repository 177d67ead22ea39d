"""Where per-file work runs: this machine's worker processes, or a Ray cluster (:mod:`.ray`)."""
