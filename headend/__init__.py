"""The commune head-end: device registry, media, broadcasts, emergency, proof of play.

Layout (FastAPI full-stack template shape):

    settings.py      one Settings() object, read from LOAXA_* environment variables
    db.py, models.py SQLAlchemy 2 engine, session and tables; migrations/ holds Alembic
    services/        keyword-only functions: the API routes and the web pages both call these
    api/             one routes file per resource under /api/v1, Annotated dependencies
    mqtt/            the long-running MQTT side: ingestion of receiver reports, signed commands
    app.py           create_app(): the FastAPI application with the MQTT service in its lifespan
    cli.py           `loaxa headend serve|migrate|provision|create-user`
"""
