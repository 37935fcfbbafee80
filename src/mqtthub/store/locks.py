"""PostgreSQL advisory locks mqtthub takes, in one place so that no two uses collide.

All use the two-key form ``(namespace, key)``; they only matter when several workers share
one database (SQLite has one writer at a time).
"""

#: ``(DEVICES, hashtext(device_id))``, per transaction: a batch holds its devices.
DEVICES = 28017
#: Held by the leader's own session for as long as it leads (see ``mqtthub.leader``).
LEADER = (28018, 1)
#: Rollups exclusively, late writes to per-minute rows shared (migration 0010 repeats it).
ROLLUPS = (28019, 1)
#: Held while one worker migrates the schema, so workers starting together do not race.
MIGRATION = (28020, 1)

#: TCP keepalives of mqtthub's PostgreSQL sessions: a vanished worker's session (and the
#: locks it holds) ends within about ``IDLE + INTERVAL * COUNT`` seconds, on both sides.
KEEPALIVE_IDLE_S = 4
KEEPALIVE_INTERVAL_S = 2
KEEPALIVE_COUNT = 2
#: The same on the server's side of every session, and a limit on a transaction left open
#: by a process that stopped mid-batch (60 s; a batch takes well under a second).
SERVER_KEEPALIVES = (
    f"-c tcp_keepalives_idle={KEEPALIVE_IDLE_S} -c tcp_keepalives_interval={KEEPALIVE_INTERVAL_S}"
    f" -c tcp_keepalives_count={KEEPALIVE_COUNT} -c idle_in_transaction_session_timeout=60000"
)
