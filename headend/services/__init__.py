"""Service functions: the head-end's operations, shared by the API routes and the web pages.

Every function takes the SQLAlchemy session first and everything else by keyword, raises a
``headend.errors.ServiceError`` for bad input (the API maps it to a 4xx), commits its own
change, and records every mutation in the audit log. Commands to receivers go out through a
``publisher`` (the running MQTT service, see headend/mqtt/) only after the commit.
"""
