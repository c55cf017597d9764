"""``hub simulate dtu``: simulated 4G DTUs with Modbus RTU slaves behind them (the slaves in
:mod:`.slave`, the Twisted client and command line in :mod:`.cli`)."""
