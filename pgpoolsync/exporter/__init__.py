"""The pgpool2_exporter-compatible exporter: pgpool's SHOW commands → metric families.
Shares no state with ``run``; the only importer of psycopg."""
