"""Simulated NB-IoT electrical-fire detectors speaking LwM2M over CoAP (``hub simulate
lwm2m``): the object tree and its values (:mod:`.objects`, :mod:`.scenario`, pure), the
payload formats (:mod:`.codec`), one aiocoap endpoint (:mod:`.endpoint`) and a fleet of them
in one process (:mod:`.fleet`)."""
