"""Turning readings and events into decisions: safety grading (:mod:`.grading`), energy
analysis (:mod:`.energy`), and the reports built from them (:mod:`hub.reports`)."""
