"""``mqtthub doctor``: probes -> evidence -> diagnose (pure rules) -> report."""
