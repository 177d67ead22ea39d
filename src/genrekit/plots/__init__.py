"""Every figure genrekit draws: run-folder metrics (:mod:`.metrics`), spectrograms and timelines of predictions
(:mod:`.predictions`) and the page that shows them (:mod:`.page`), all drawn on pyplot-free figures
(:mod:`._figure`) in one palette (:mod:`.palette`)."""
