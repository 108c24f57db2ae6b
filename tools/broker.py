"""`loaxa broker`: the embedded pure-Python MQTT broker (amqtt) for one commune on one small PC.

Mosquitto is the production broker; this one needs nothing but Python, so the demo, the
simulator and the tests run anywhere. Retained messages and last wills work, which is all the
receiver presence protocol needs. Like Mosquitto it reads the head-end's exported password and
ACL files (tools/broker_acl.py): each receiver may touch only its own topics, anonymous clients
are refused, and it will not start without accounts unless told ``--allow-anonymous`` (tests).
A persistent session of a logged-in client (the head-end's) keeps its QoS 1 messages while it
is away; amqtt keeps none for anonymous clients. Prints ``broker listening on HOST:PORT`` (then
where its accounts come from) when it accepts connections; stops cleanly on SIGINT/SIGTERM.
"""

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path


def broker_config(host, port, passwd_file=None, acl_file=None):
    """The amqtt configuration: one TCP listener, no $SYS chatter; with a Mosquitto password
    file and ACL file (tools/broker_acl.py) every client must log in and is held to the ACL,
    without them anyone connects anonymously and may do anything (tests only)."""
    if passwd_file:
        plugins = {"tools.broker_acl.PasswdFileAuthPlugin": {"password_file": str(passwd_file)},
                   "tools.broker_acl.AclFilePlugin": {"acl_file": str(acl_file)}}
    else:
        plugins = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    return {
        "listeners": {"default": {"type": "tcp", "bind": "%s:%d" % (host, port)}},
        "plugins": plugins,
    }


def _authenticate_before_session_lookup(broker):
    """Make amqtt authenticate a CONNECT before it touches the session of its client id,
    and never resume a clean session as a persistent one.

    amqtt 0.12 deletes (clean session) or takes over the existing session named by a CONNECT's
    client id first and checks the credentials afterwards, so anyone reaching the port, even
    with a wrong password, could knock the head-end off by naming its client id. Here the
    credentials are checked as the CONNECT is read, and a refused client is answered
    "not authorized" before any session is looked at. The same goes for a last will on a topic
    the account may not write (amqtt publishes wills unchecked). A client id that is still
    connected has its old connection closed first (amqtt leaves it open and deaf). The broker
    process runs one broker, so wrapping the class's reader once is safe.
    """
    from amqtt.contexts import Action
    from amqtt.errors import AMQTTError
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

    read_connect = BrokerProtocolHandler.init_from_connect

    async def _will_allowed(session):
        # amqtt 0.12 publishes a last will without asking the ACL: a receiver could set its will
        # on another receiver's status or event topic and forge that receiver's report by
        # dropping its link. The will topic must be a topic name (no wildcard, no "$") the
        # account may write, exactly as a PUBLISH of it would be checked.
        if not session.will_flag:
            return True
        topic = session.will_topic
        if not topic or "+" in topic or "#" in topic or topic.startswith("$"):
            return False
        return await broker._topic_filtering(session, topic, Action.PUBLISH)

    async def _close_old_connection(known):
        # A second CONNECT with a connected client id (MQTT-3.1.4-2: the server disconnects the
        # existing client). amqtt 0.12 drops the old session's subscriptions (clean session) or
        # hands its session to the new connection, but leaves the old socket open: the old
        # client stays connected, deaf, and never reconnects. Here its handler is stopped (the
        # socket closed) and its message loop is let run to its end (will published, session
        # marked disconnected) before the new connection's session is looked up, so the new
        # connection resumes or replaces a disconnected session the normal way.
        session, old_handler = known
        broker.logger.info("%s connected again: closing its previous connection",
                           session.client_id)
        await old_handler.stop()
        for _ in range(500):  # bounded: the old message loop ends within a few iterations
            if session.transitions.state != "connected":
                break
            await asyncio.sleep(0.01)

    async def read_and_authenticate(reader, writer, plugins_manager, loop=None):
        handler, session = await read_connect(reader, writer, plugins_manager, loop)
        if not await broker._authenticate(session, None) or not await _will_allowed(session):
            handler.attach(session, reader, writer)
            await handler.mqtt_connack_authorize(False)
            await writer.close()
            raise AMQTTError("refused %r before its session was looked up" % session.client_id)
        known = broker._sessions.get(session.client_id)
        if known is not None and known[0].transitions.state == "connected":
            await _close_old_connection(known)
        if known is not None and known[0].clean_session and not session.clean_session:
            # A clean session's state ends with its connection (MQTT 3.1.2.4), but amqtt keeps it
            # until a periodic sweep and would resume it with its clean flag: the head-end's
            # persistent session would then not queue the reports sent while it is away.
            if known[0].transitions.state == "disconnected":
                await broker._cleanup_session(session.client_id)
            else:
                known[0].clean_session = False
        return handler, session

    BrokerProtocolHandler.init_from_connect = read_and_authenticate


def _keep_undelivered_for_persistent_sessions():
    """Queue again a QoS 1/2 message that a persistent session's connection failed to take.

    amqtt 0.12 forgets an outgoing message whose acknowledgement never came: when a head-end's
    connection closes (a DISCONNECT being processed, a dropped link not yet noticed) while a
    report is on its way to it, the flow is cancelled and the message is discarded with it.
    MQTT 3.1.2.4 keeps unacknowledged QoS 1 and 2 messages of a session without clean start, so
    here such a message goes back to the session's queue and is sent when the client returns.
    A message the client did get but whose acknowledgement was lost arrives twice, which QoS 1
    allows (the head-end's reports are idempotent by device and sequence number).
    """
    from amqtt.broker import RetainedApplicationMessage
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
    from amqtt.session import OUTGOING

    if getattr(BrokerProtocolHandler, "_loaxa_keeps_undelivered", False):
        return  # several brokers in one process (tests): wrap once
    BrokerProtocolHandler._loaxa_keeps_undelivered = True

    def keeping(flow, acknowledged):
        async def run(self, app_message):
            try:
                await flow(self, app_message)
            finally:
                session = self.session
                if (app_message.direction == OUTGOING and not acknowledged(app_message)
                        and session is not None and not session.clean_session
                        and not session.is_anonymous):
                    session.retained_messages.put_nowait(RetainedApplicationMessage(
                        None, app_message.topic, app_message.data, app_message.qos))
        return run

    BrokerProtocolHandler._handle_qos1_message_flow = keeping(
        BrokerProtocolHandler._handle_qos1_message_flow, lambda m: m.puback_packet is not None)
    BrokerProtocolHandler._handle_qos2_message_flow = keeping(
        BrokerProtocolHandler._handle_qos2_message_flow, lambda m: m.pubrec_packet is not None)


def _retained_messages_obey_the_read_acl():
    """Send a retained message only to a session subscribed to the filter and allowed to read it.

    amqtt 0.12 hands out retained messages without asking the ACL, which it does ask for every
    live delivery; and when a client connects it replays the retained messages of every filter
    any client has subscribed to (the head-end's ``loaxa/v1/#``), not only its own. A receiver
    could so read every other receiver's retained birth and status just by connecting. Here
    each retained message is checked like a live delivery (RECEIVE, the ACL's "read"), for
    filters the session really holds.
    """
    from amqtt.broker import Broker
    from amqtt.contexts import Action

    if getattr(Broker, "_loaxa_retained_acl", False):
        return  # several brokers in one process (tests): wrap once
    Broker._loaxa_retained_acl = True

    async def publish_retained(self, subscription, session):
        topic_filter, qos = subscription
        if all(held.client_id != session.client_id
               for held, _ in self._subscriptions.get(topic_filter, ())):
            return
        handler = self._get_handler(session)
        if handler is None:
            return
        tasks = []
        for topic, retained in list(self._retained_messages.items()):
            if (self._matches(topic, topic_filter)
                    and await self._topic_filtering(session, topic, Action.RECEIVE)):
                kept_qos = qos if retained.qos is None else retained.qos
                tasks.append(asyncio.ensure_future(handler.mqtt_publish(
                    retained.topic, retained.data, min(qos, kept_qos), retain=True)))
        if tasks:
            await asyncio.wait(tasks)

    Broker._publish_retained_messages_for_subscription = publish_retained


async def serve(host, port, passwd_file=None, acl_file=None, ready=None):
    """Run the broker until cancelled or until SIGINT/SIGTERM."""
    from amqtt.broker import Broker

    broker = Broker(broker_config(host, port, passwd_file, acl_file))
    if passwd_file:
        _authenticate_before_session_lookup(broker)
    _keep_undelivered_for_persistent_sessions()
    _retained_messages_obey_the_read_acl()
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    print("broker listening on %s:%d" % (host, port), flush=True)
    print("accounts from %s, ACL from %s" % (passwd_file, acl_file) if passwd_file
          else "ANONYMOUS, no ACL: for tests only", flush=True)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await broker.shutdown()


def _quiet_logging(verbose):
    level = logging.INFO if verbose else logging.CRITICAL
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # amqtt logs every dropped client at ERROR; a receiver losing its link is not an error here.
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(level)


def _account_files(parser, args):
    """(passwd, acl) paths, or (None, None) for an anonymous broker; exits on a bad mix."""
    passwd, acl = args.passwd, args.acl
    if args.config_dir:
        if passwd or acl:
            parser.error("--config-dir replaces --passwd and --acl; give one or the other")
        passwd, acl = args.config_dir / "passwd", args.config_dir / "acl"
    if passwd or acl:
        if args.allow_anonymous:
            parser.error("--allow-anonymous cannot be combined with accounts")
        if not (passwd and acl):
            parser.error("--passwd and --acl go together: accounts without an ACL would let "
                         "any receiver command every other")
        from tools.broker_acl import AccountFileError, Acl, read_passwd

        try:
            if not read_passwd(passwd):
                parser.error("%s holds no account" % passwd)
            Acl.parse(acl.read_text(), str(acl))
        except OSError as exc:
            parser.error("cannot read %s: %s (write it with `loaxa headend export-mosquitto "
                         "DIR`)" % (exc.filename, exc.strerror))
        except AccountFileError as exc:
            parser.error(str(exc))
        return passwd, acl
    if not args.allow_anonymous:
        parser.error("refusing to start without accounts: give --config-dir DIR (the files "
                     "`loaxa headend export-mosquitto DIR` writes) or --passwd and --acl; "
                     "--allow-anonymous is for tests only")
    return None, None


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="loaxa broker", description=__doc__.splitlines()[0],
        epilog="The account files are the ones production Mosquitto reads: `loaxa headend "
               "export-mosquitto DIR` writes DIR/passwd and DIR/acl. They are read again when "
               "they change.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1883, help="TCP port (default 1883)")
    parser.add_argument("--config-dir", type=Path, metavar="DIR",
                        help="use DIR/passwd and DIR/acl (from `loaxa headend export-mosquitto`)")
    parser.add_argument("--passwd", type=Path, metavar="FILE",
                        help="Mosquitto password file (user:$7$ PBKDF2-SHA512 hash per line)")
    parser.add_argument("--acl", type=Path, metavar="FILE",
                        help="Mosquitto ACL file (user/topic/pattern lines, %%u = username)")
    parser.add_argument("--allow-anonymous", action="store_true",
                        help="for tests only: no accounts, no ACL, anyone may publish anything")
    parser.add_argument("-v", "--verbose", action="store_true", help="log connections")
    args = parser.parse_args(argv)
    passwd, acl = _account_files(parser, args)
    _quiet_logging(args.verbose)
    try:
        asyncio.run(serve(args.host, args.port, passwd, acl))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print("loaxa broker: cannot listen on %s:%d: %s" % (args.host, args.port, exc),
              file=sys.stderr)
        return 1
    except Exception as exc:  # amqtt wraps bind errors in BrokerError
        print("loaxa broker: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
