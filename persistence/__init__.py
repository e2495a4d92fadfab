"""SQLModel tables, the engine, and the queries the service and the CLI run."""
