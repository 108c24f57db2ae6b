"""The head-end's MQTT side: ingestion of receiver reports and publishing of signed commands.

``ingest.py`` turns a batch of reports into database changes (no I/O but the session);
``service.py`` is the long-running client around it (paho-mqtt, its own threads).
"""
