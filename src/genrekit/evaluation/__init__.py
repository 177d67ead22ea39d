"""Scoring a trained run on its test tracks: the metric math (:mod:`.metrics`), and the evaluated run folders,
report files and side-by-side comparisons written from it (:mod:`.reports`)."""
