"""``mqtthub doctor``: probes -> evidence -> pure rules (``checks``, ``*_rules``) -> report."""
