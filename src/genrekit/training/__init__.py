"""Training a classifier on a feature store: its configuration (:mod:`.config`), the run folders it writes,
reads back and resumes (:mod:`.runs`), the fit loop (:mod:`.fit`) and on-the-fly augmentation (:mod:`.augment`)."""
