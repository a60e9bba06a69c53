"""Where events come from: a Kafka consumer group (live) or JSON-lines files (replay)."""
