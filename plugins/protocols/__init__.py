"""Wire codecs several plugins speak (device models, transports, simulators): sans-IO,
no plugin hooks, importing nothing but :mod:`hub.contracts` and :mod:`hub.model`."""
