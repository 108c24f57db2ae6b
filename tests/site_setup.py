"""A head-end's database made ready for an end-to-end test: migrated, receivers provisioned
over villages, users with a password; the simulator's specs of the receivers back. One place
for the set-up the process-level tests (tests/integration/, tests/web/ browser walks) share."""

from headend.db import make_engine, make_session_factory, migrate
from headend.services.provisioning import provision_fleet
from headend.services.users import create_user
from headend.settings import Settings
from simulator.fleet import DeviceSpec


def provision_site(data_dir, broker, *, site, receivers, zones, users, password, prefix="r"):
    """``users``: (username, role) or (username, role, full name). Returns the DeviceSpecs."""
    settings = Settings(data_dir=data_dir, site_id=site, mqtt_host=broker.host,
                        mqtt_port=broker.port)
    url = settings.resolved_database_url
    migrate(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        fleet = provision_fleet(session, settings=settings, receivers=receivers, zones=zones,
                                broker=(broker.host, broker.port), prefix=prefix, actor="test")
        for username, role, *full_name in users:
            create_user(session, username=username, password=password, role=role,
                        full_name=full_name[0] if full_name else None)
    engine.dispose()
    return [DeviceSpec.from_json(d) for d in fleet["devices"]]
