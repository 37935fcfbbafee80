"""mqtthub: an MQTT device backend that ingests telemetry into SQL and serves it."""

__version__ = "0.1.0"
__all__ = ["__version__"]
