"""The pure core: value types, validation, and the text of pgpool's files.

Nothing here does I/O or imports an I/O library (kubernetes, watchdog, sockets,
prometheus_client, psycopg); tests/unit/test_architecture.py enforces it. Sources hand in plain
values, the actuator writes what ``render`` returns.
"""
