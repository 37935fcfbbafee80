"""The MQTT edge: connection, reconnect policy, reason codes and the embedded broker."""
