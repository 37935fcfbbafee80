"""The pieces of ``benchmarks/fuzz.py``: what it sends, how, what it watches, what it checks.

* :mod:`fuzzing.model`: a message and its expected outcome; per-kind generator state;
* :mod:`fuzzing.payloads`, :mod:`fuzzing.values`, :mod:`fuzzing.topics`: one generator
  per hostile kind, deterministic from the seed;
* :mod:`fuzzing.mix`: the kinds, their shares and the sending order;
* :mod:`fuzzing.publisher`: the publisher process (raw MQTT, paced) and its tallies;
* :mod:`fuzzing.observe`: RSS, canaries, /api/stats, the database and serve's log;
* :mod:`fuzzing.checks`: the assertions and the printed summary.
"""
