"""Everything simulated: the demo transport and its device model (:mod:`.demo`), and the
``hub simulate`` peers: 4G DTUs with Modbus slaves (:mod:`.dtu`), LwM2M detectors
(:mod:`.lwm2m`) and MQTT detectors (:mod:`.mqtt`). What a detector measures over time is
the one scenario engine of :mod:`.scenario`."""
