"""Alarm handling: the lifecycle of alarm records (:mod:`.lifecycle`), the desk that keeps
them from the journal (:mod:`.desk`), notification policies and escalation
(:mod:`.policy`), hazards (:mod:`.hazards`) and statistics (:mod:`.stats`)."""
