"""Mosquitto's password and ACL files, enforced by the embedded broker (`loaxa broker`, amqtt).

The head-end exports one pair of files (`loaxa headend export-mosquitto DIR`: ``passwd`` with
Mosquitto's ``$7$`` PBKDF2-SHA512 hashes, ``acl`` with ``user``/``topic``/``pattern`` lines), and
both brokers read that same pair, so the demo and production hold receivers to the same rules
(docs/protocol.md, "Broker ACL"). amqtt's own FileAuthPlugin only knows argon2/crypt hashes and
its ACL plugin has no ``%u`` patterns, hence these two small plugins:

    plugins:
      tools.broker_acl.PasswdFileAuthPlugin: {password_file: DIR/passwd}
      tools.broker_acl.AclFilePlugin: {acl_file: DIR/acl}

Both files are read again when they change on disk (the password file at each CONNECT, the
ACL at most once a second), so exporting again after provisioning a receiver is enough; no restart, no signal.

Supported ACL subset (what Mosquitto documents for ``acl_file``): ``user NAME``,
``topic [read|write|readwrite|deny] TOPIC``, ``pattern [read|write|readwrite|deny] TOPIC`` with
``%u`` (username) and ``%c`` (client id). ``topic`` lines before the first ``user`` line apply
to anonymous clients, which the embedded broker refuses anyway. No matching entry means no
access; a matching ``deny`` entry wins.
"""

import base64
import binascii
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from pathlib import Path

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

READ = "read"
WRITE = "write"
_ACCESS = {"read": {READ}, "write": {WRITE}, "readwrite": {READ, WRITE}, "deny": {"deny"}}


class AccountFileError(ValueError):
    """A password or ACL file the broker cannot use (it then refuses to start)."""


# -- passwords ---------------------------------------------------------------------------------

def verify_mosquitto_hash(password, hashed):
    """True if ``password`` matches a Mosquitto password-file hash.

    ``$7$ITER$SALT$HASH``: PBKDF2-HMAC-SHA512 (Mosquitto 2); ``$6$SALT$HASH``: SHA512 of
    password then salt (older mosquitto_passwd). Salt and hash are base64.
    """
    parts = hashed.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            iterations = int(parts[2])
            salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
            computed = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
        elif len(parts) == 4 and parts[1] == "6":
            salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            computed = hashlib.sha512(password.encode() + salt).digest()
        else:
            return False
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(computed, digest)


def read_passwd(path):
    """{username: hash} from a Mosquitto password file."""
    users = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed.startswith(("$7$", "$6$")):
            raise AccountFileError("%s:%d: expected user:$7$... (a Mosquitto hash)" % (path, number))
        users[user] = hashed
    return users


# -- ACL ---------------------------------------------------------------------------------------

def topic_matches(filter_, topic):
    """MQTT matching: does a PUBLISH on ``topic`` match the filter (``+`` one level, ``#`` the
    rest, including none)?"""
    want, have = filter_.split("/"), topic.split("/")
    if have[0].startswith("$") and want[0] in ("+", "#"):
        return False
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(have) or (level != "+" and level != have[i]):
            return False
    return len(want) == len(have)


def filter_within(acl, subscription):
    """Is every topic the ``subscription`` filter can match also matched by ``acl``?

    A wildcard in the subscription is only covered by a wildcard in the ACL, so a device allowed
    ``.../dev/d1/cmd`` cannot subscribe to ``.../dev/+/cmd`` or ``loaxa/v1/#``.
    """
    want, have = acl.split("/"), subscription.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(have) or have[i] == "#":
            return False
        if level != "+" and level != have[i]:
            return False
    return len(want) == len(have)


class Acl:
    """A parsed Mosquitto ACL file: ``allows(username, client_id, access, topic, is_filter)``."""

    def __init__(self, topics_by_user, patterns):
        self.topics_by_user = topics_by_user  # {username or None: [(access set, topic)]}
        self.patterns = patterns  # [(access set, topic with %u/%c)]

    @classmethod
    def parse(cls, text, source="acl"):
        topics_by_user = {None: []}
        patterns = []
        user = None
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keyword, _, rest = line.partition(" ")
            rest = rest.strip()
            if keyword == "user":
                user = rest
                topics_by_user.setdefault(user, [])
                continue
            if keyword not in ("topic", "pattern") or not rest:
                raise AccountFileError("%s:%d: cannot read %r" % (source, number, raw))
            access, _, topic = rest.partition(" ")
            if access in _ACCESS and topic.strip():
                entry = (_ACCESS[access], topic.strip())
            else:  # "topic TOPIC" means readwrite
                entry = (_ACCESS["readwrite"], rest)
            (patterns if keyword == "pattern" else topics_by_user[user]).append(entry)
        return cls(topics_by_user, patterns)

    def _entries(self, username, client_id):
        yield from self.topics_by_user.get(username, ())
        if username is None:
            return
        for access, pattern in self.patterns:
            # as in Mosquitto: a name with wildcards or "/" must not widen a pattern
            if "%u" in pattern and any(c in username for c in "+#/"):
                continue
            if "%c" in pattern and (not client_id or any(c in client_id for c in "+#/")):
                continue
            yield access, pattern.replace("%u", username).replace("%c", client_id or "")

    def allows(self, username, client_id, access, topic, is_filter=False):
        match = filter_within if is_filter else topic_matches
        granted = False
        for allowed, acl_topic in self._entries(username, client_id):
            if not match(acl_topic, topic):
                continue
            if "deny" in allowed:
                return False
            granted = granted or access in allowed
        return granted


# -- the amqtt plugins -------------------------------------------------------------------------

class _WatchedFile:
    """A file parsed again when its modification time or size changes (looked at no more than
    once a second: the ACL is consulted for every message)."""

    CHECK_EVERY_S = 1.0

    def __init__(self, path, parse):
        self.path = Path(path)
        self._parse = parse
        self._stamp = None
        self._checked = 0.0
        self.value = None
        self.refresh()

    def refresh(self, force=False):
        now = time.monotonic()
        if not force and self.value is not None and now - self._checked < self.CHECK_EVERY_S:
            return self.value
        self._checked = now
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            if self.value is None:
                raise AccountFileError("cannot read %s: %s" % (self.path, exc.strerror)) from exc
            return self.value  # a file being rewritten: keep the last good copy
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                self.value = self._parse(self.path)
            except AccountFileError:
                if self.value is None:
                    raise
                return self.value  # half written: keep the last good copy, retry next time
            self._stamp = stamp
        return self.value


class PasswdFileAuthPlugin(BaseAuthPlugin):
    """Accepts a CONNECT only with a username and password found in a Mosquitto passwd file."""

    @dataclass
    class Config:
        password_file: str = ""

    def __init__(self, context):
        super().__init__(context)
        self._users = _WatchedFile(self.context.config.password_file, read_passwd)

    async def authenticate(self, *, session):
        username, password = session.username, session.password
        if not username or password is None:
            self.context.logger.info("refused %s: no username/password", session.client_id)
            return False
        if isinstance(password, bytes | bytearray):
            password = bytes(password).decode("utf-8", "replace")
        if session.client_id != username:
            # One client id per account, as Mosquitto's use_username_as_clientid: otherwise any
            # receiver could connect with the head-end's client id and knock it off the broker.
            self.context.logger.info("refused %s: client id is not the username %r",
                                     session.client_id, username)
            return False
        hashed = self._users.refresh(force=True).get(username)
        if hashed is None or not verify_mosquitto_hash(password, hashed):
            self.context.logger.info("refused %s: bad credentials for %r", session.client_id,
                                     username)
            return False
        return True


class AclFilePlugin(BaseTopicPlugin):
    """Holds every account to a Mosquitto ACL file: publish needs ``write``; subscribe and each
    delivery need ``read`` (a subscription filter must lie within a readable pattern)."""

    @dataclass
    class Config:
        acl_file: str = ""

    def __init__(self, context):
        super().__init__(context)
        path = self.context.config.acl_file
        self._acl = _WatchedFile(path, lambda p: Acl.parse(Path(p).read_text(), str(p)))

    async def topic_filtering(self, *, session=None, topic=None, action=None):
        if session is None or not topic:
            return False
        acl = self._acl.refresh()
        if action == Action.PUBLISH:
            return acl.allows(session.username, session.client_id, WRITE, topic)
        if action == Action.SUBSCRIBE:
            return acl.allows(session.username, session.client_id, READ, topic, is_filter=True)
        return acl.allows(session.username, session.client_id, READ, topic)  # RECEIVE
