"""Real components for the tests: a tansu Kafka broker, a PostgreSQL database, Mosquitto."""
