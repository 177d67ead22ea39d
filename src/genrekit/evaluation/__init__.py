"""Scoring a trained run on its test tracks: metrics, confusion matrices and the reports written from them (:mod:`.metrics`)."""
