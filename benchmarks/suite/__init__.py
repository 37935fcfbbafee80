"""The pieces of ``benchmarks/run.py``: processes, databases, measurements and the report.

Every measurement starts its own processes (Mosquitto on a free 127.0.0.1 port,
``mqtthub serve``, publishers, simulated devices) and stops them again, by pid, whatever
happens. Nothing here touches the system broker on 1883.
"""
