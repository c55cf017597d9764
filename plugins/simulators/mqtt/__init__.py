"""``hub simulate mqtt``: simulated detectors publishing through an MQTT broker (:mod:`.cli`)."""
