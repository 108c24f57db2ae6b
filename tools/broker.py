"""`loaxa broker`: the embedded pure-Python MQTT broker (amqtt) for one commune on one small PC.

Mosquitto is the production broker; this one needs nothing but Python, so the demo, the
simulator and the tests run anywhere. Retained messages and last wills work, which is all the
receiver presence protocol needs. Prints one line ``broker listening on HOST:PORT`` when it
accepts connections and stops cleanly on SIGINT/SIGTERM.
"""

import argparse
import asyncio
import logging
import signal
import sys


def broker_config(host, port, passwd_file=None):
    """The amqtt configuration: one TCP listener, no $SYS chatter, anonymous unless a password
    file (amqtt format: ``user:argon2-or-bcrypt-hash`` per line) is given."""
    if passwd_file:
        auth = {"amqtt.plugins.authentication.FileAuthPlugin": {"password_file": passwd_file}}
    else:
        auth = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    return {
        "listeners": {"default": {"type": "tcp", "bind": "%s:%d" % (host, port)}},
        "plugins": auth,
    }


async def serve(host, port, passwd_file=None, ready=None):
    """Run the broker until cancelled or until SIGINT/SIGTERM."""
    from amqtt.broker import Broker

    broker = Broker(broker_config(host, port, passwd_file))
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    print("broker listening on %s:%d" % (host, port), flush=True)
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="loaxa broker", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1883, help="TCP port (default 1883)")
    parser.add_argument("--passwd", metavar="FILE",
                        help="amqtt password file (user:argon2 hash); anonymous if omitted")
    parser.add_argument("-v", "--verbose", action="store_true", help="log connections")
    args = parser.parse_args(argv)
    _quiet_logging(args.verbose)
    try:
        asyncio.run(serve(args.host, args.port, args.passwd))
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
