"""CAP 1.2 (OASIS Common Alerting Protocol) alerts from a warning agency, without IO.

- ``parse.py``: bytes to an immutable Alert, defused and validated (``schema.py``,
  CAP-v1.2.xsd), or a CapError (``errors.py``) with a code and English/Vietnamese messages;
- ``area.py``: a CAP area (polygons, circles, geocodes) to the zones it touches;
- ``policy.py``: aired / queued / logged / refused, with a reason, and the text to read;
- ``intake.py``: the three together, for the API route and a feed poller;
- ``demo_zones.py``: the demo commune's villages.

docs/cap.md describes what is accepted and every outcome.
"""
