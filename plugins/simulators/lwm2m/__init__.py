"""Simulated NB-IoT electrical-fire detectors speaking LwM2M over CoAP (``hub simulate
lwm2m``): the object tree and its values (:mod:`.objects`, pure; the values come from the
shared scenario engine :mod:`plugins.simulators.scenario`), the payload formats
(:mod:`.codec`), one aiocoap endpoint (:mod:`.endpoint`), a fleet of them in one process
(:mod:`.fleet`) and the command line (:mod:`.cli`)."""
