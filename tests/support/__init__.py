"""Test-support code: real Mosquitto brokers, free ports and TLS material for tests."""
