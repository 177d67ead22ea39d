"""Every figure genrekit draws: run-folder metrics (:mod:`.metrics`), spectrograms and timelines of predictions
(:mod:`.predictions`), all in one genre palette (:mod:`.palette`)."""
