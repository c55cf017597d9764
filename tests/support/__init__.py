"""Helpers the tests and the benchmark scripts share: peers, services, the hub-process helper,
the test plugins and the fixtures data that more than one test module reads."""
