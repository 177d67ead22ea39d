"""Training a classifier on a feature store: the fit loop and its run folders (:mod:`.fit`), and on-the-fly
augmentation (:mod:`.augment`)."""
