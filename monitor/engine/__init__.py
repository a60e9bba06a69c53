"""The engine stage: one `Shard` per partition runs decoded events through the session table and
the detectors in event time (`shard`); what it hands downstream is in `findings`."""
