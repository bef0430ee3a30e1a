"""Basic authentication against bcrypt hashes: a thread-safe check with a positive cache.

``check`` may be called from any number of threads at once. No lock is held while bcrypt
runs, so a flood of wrong passwords cannot queue a correct one behind it; how many checks run
at once is the caller's bound (the server runs uncached checks in a small pool). What keeps a
flood cheap:

- A password that matched is cached (keyed by an HMAC of user, hash and password under a
  per-process random key, never the password itself), so a scrape costs bcrypt once, not every
  time, and ``lookup`` answers it without bcrypt (safe to call on an event loop).
- Identical checks in progress at once share one bcrypt computation, and the last few hundred
  wrong passwords are remembered (by HMAC too), so a client retrying an old password costs
  nothing after its first try.
- An unknown user costs the same bcrypt computation as a known one (no user enumeration).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping

import bcrypt

from .settings.web import BCRYPT_MAX_PASSWORD

#: Wrong passwords remembered per configuration (by HMAC): bounded memory.
NEGATIVE_CACHE_SIZE = 512


class BasicAuth:
    """The users of one web configuration and what is known about passwords checked so far.

    A new configuration gets a new instance, so a reload forgets every cached answer.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self.users = dict(users)
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()  # guards the dicts below; never held during bcrypt
        self._good: dict[str, bytes] = {}  # user -> digest of the password that matched
        self._bad: OrderedDict[bytes, None] = OrderedDict()
        self._running: dict[bytes, _Flight] = {}
        self._dummy: bytes | None = None

    def _digest(self, user: str, hashed: bytes, password: bytes) -> bytes:
        message = user.encode("utf-8") + b"\0" + hashed + b"\0" + password
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def lookup(self, user: str, password: bytes) -> bool | None:
        """The answer when it is known without bcrypt (cached good or bad), else None."""
        hashed = self.users.get(user)
        digest = self._digest(user, hashed or b"", password[:BCRYPT_MAX_PASSWORD])
        good = self._good.get(user)
        if hashed is not None and good is not None and hmac.compare_digest(good, digest):
            return True
        with self._lock:
            if digest in self._bad:
                self._bad.move_to_end(digest)
                return False
        return None

    def check(self, user: str, password: bytes) -> bool:
        """True when ``password`` matches ``user``'s hash. Thread-safe; may run bcrypt."""
        known = self.lookup(user, password)
        if known is not None:
            return known
        hashed = self.users.get(user)
        candidate = password[:BCRYPT_MAX_PASSWORD]
        digest = self._digest(user, hashed or b"", candidate)
        with self._lock:
            flight = self._running.get(digest)
            leader = flight is None
            if flight is None:
                flight = self._running[digest] = _Flight()
        if not leader:
            flight.done.wait()
            return flight.ok
        try:
            try:
                ok = bcrypt.checkpw(candidate, hashed or self._dummy_hash())
            except ValueError:
                ok = False
            ok = ok and hashed is not None
            with self._lock:
                if ok:
                    self._good[user] = digest
                else:
                    self._bad[digest] = None
                    while len(self._bad) > NEGATIVE_CACHE_SIZE:
                        self._bad.popitem(last=False)
            flight.ok = ok
            return ok
        finally:
            with self._lock:
                self._running.pop(digest, None)
            flight.done.set()

    def _dummy_hash(self) -> bytes:
        """A hash of a random password at the users' median cost, checked for unknown users."""
        if self._dummy is None:
            costs = sorted(int(h[4:6]) for h in self.users.values()) or [10]
            self._dummy = bcrypt.hashpw(
                secrets.token_bytes(16), bcrypt.gensalt(rounds=costs[len(costs) // 2])
            )
        return self._dummy


class _Flight:
    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
