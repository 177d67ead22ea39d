"""Labeled data: finding tracks (:mod:`.discover`), splitting them by track (:mod:`.splits`) and the feature store (:mod:`.store`)."""
