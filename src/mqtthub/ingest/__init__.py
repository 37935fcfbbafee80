"""Ingest: from received MQTT messages to committed batches, acknowledged after commit.

The single writer (:class:`mqtthub.ingest.writer.BatchWriter`) owns the database thread;
every write of the service goes through it.
"""
