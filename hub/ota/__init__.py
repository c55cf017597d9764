"""Firmware updates over the air (LwM2M object 5) as campaigns: versions
(:mod:`.version`), the firmware repository's checks (:mod:`.images`), the per-device state
machine (:mod:`.machine`), waves (:mod:`.campaign`) and the manager that runs them in the hub
(:mod:`.manager`)."""
