"""Library runs: classifying a whole music library into a results file that survives interruption (:mod:`.run`),
and the writers of prediction results (:mod:`.writers`)."""
