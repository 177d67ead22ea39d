"""Library runs: classifying a whole music library into a results file that survives interruption (:mod:`.run`),
the crash-safe results files and their one row layout (:mod:`.formats`), and the writers of prediction
results (:mod:`.writers`)."""
