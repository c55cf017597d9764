"""Wire protocols that several plugins speak (device models, transports, simulators)."""
