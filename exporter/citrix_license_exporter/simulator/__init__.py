"""Simulated Citrix License Servers on 127.0.0.1, for tests, the demo and benchmarks.

SIMULATED: nothing here is a real Citrix component. Each simulated server opens real TCP
listeners (and a real TLS listener with a generated certificate) and, where a scenario asks for
it, speaks the same wire protocols as the real thing, so the exporter's client code under test
is the code users run.
"""
