"""The pgpool2_exporter-compatible exporter: pgpool's SHOW commands → metric families.

Rooms: ``table`` (a SHOW answer by column name), ``families`` (every family: name, type, HELP,
how it is read), ``exposition`` (the text format), ``conninfo`` (``DATA_SOURCE_*``, masking),
``scrape`` (the connection; the only importer of psycopg), ``command`` (flags and process).
Shares no state with ``run`` and imports nothing of the core (tests/unit/test_architecture.py).
"""
