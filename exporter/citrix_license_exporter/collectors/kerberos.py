"""Kerberos credentials for the WinRM collector: where the client's ticket comes from, and why
getting or using one failed, in words an admin can act on.

Three sources (``winrm.kerberos``, docs/windows-setup.md):

- **password** (``password_file``/``password_env``): the exporter gets a ticket-granting ticket
  itself (what ``kinit`` does) into a credential cache private to this process: a file in a
  0700 directory of its own, never the user's cache. It gets a new one before the old one
  expires (``REFRESH_MARGIN``), so a long-running exporter never presents an expired ticket.
- **keytab** (``kerberos.keytab``): the same, with the principal's key from the keytab file.
- **an existing credential cache** (``kerberos.ccache`` or ``KRB5CCNAME``): kept fresh by
  someone else (k5start, sssd, a cron'd ``kinit -R``); the exporter only reads it and says
  when its ticket has expired.

The tickets are MIT Kerberos' (the ``krb5`` bindings, from pyspnego's ``kerberos`` extra); the
security context is pyspnego's GSSAPI one, handed the cache as a ``spnego.KerberosCCache``.
A KDC that never answers cannot hold the probe: the AS exchange runs in its own thread (one per
principal at a time) and the probe stops waiting for it at its deadline.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import hmac
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import spnego

from .base import CollectorError, Deadline, FailureKind

#: A new ticket is fetched when the current one has less than this left (seconds), or less
#: than a quarter of its lifetime, whichever is smaller (short test lifetimes).
REFRESH_MARGIN = 300.0

# MIT krb5 error codes (krb5/krb5_err.et and kdb5_err: ERROR_TABLE_BASE_krb5 = -1765328384).
_BASE = -1765328384
KDC_ERR_NAME_EXP = _BASE + 1
KDC_ERR_C_PRINCIPAL_UNKNOWN = _BASE + 6
KDC_ERR_S_PRINCIPAL_UNKNOWN = _BASE + 7
KDC_ERR_CLIENT_REVOKED = _BASE + 18
KDC_ERR_KEY_EXP = _BASE + 23
KDC_ERR_PREAUTH_FAILED = _BASE + 24
KRB_AP_ERR_BAD_INTEGRITY = _BASE + 31
KRB_AP_ERR_TKT_EXPIRED = _BASE + 32
KRB_AP_ERR_TKT_NYV = _BASE + 33
KRB_AP_ERR_SKEW = _BASE + 37
KRB5_KDCREP_SKEW = _BASE + 148
KRB5_REALM_UNKNOWN = _BASE + 154
KRB5_KDC_UNREACH = _BASE + 156
KRB5_KT_NOTFOUND = _BASE + 181
KRB5_FCC_NOFILE = _BASE + 195
KRB5_CC_NOTFOUND = _BASE + 141
KRB5_CONFIG_NODEFREALM = _BASE + 224
KRB5_KT_END = _BASE + 182
KRB5_PREAUTH_FAILED = _BASE + 210


#: Answers that refuse the credentials themselves: each retry would be another failed logon.
REFUSALS = frozenset({KDC_ERR_C_PRINCIPAL_UNKNOWN, KDC_ERR_PREAUTH_FAILED, KRB_AP_ERR_BAD_INTEGRITY,
                      KRB5_PREAUTH_FAILED, KDC_ERR_CLIENT_REVOKED, KDC_ERR_KEY_EXP})
#: How long refused credentials are not presented again (seconds); a changed password (a
#: reload) is tried at once.
RETRY_REFUSED = 900.0


def _signed(code: int) -> int:
    """GSSAPI minor codes arrive as unsigned 32-bit numbers; krb5 error codes are signed."""
    code &= 0xFFFFFFFF
    return code - (1 << 32) if code & 0x80000000 else code


def describe(code: int, *, principal: str, spn: str) -> tuple[str, FailureKind]:
    """A short reason and failure kind for a krb5 error code; no secret is ever in it."""
    return known(code, principal=principal, spn=spn) or (
        f"Kerberos error (code {_signed(code)})", FailureKind.AUTH)


def known(code: int | None, *, principal: str, spn: str) -> tuple[str, FailureKind] | None:
    """As ``describe``, for the codes this module knows; None for others (and for None)."""
    if not code:
        return None
    code = _signed(code)
    if code in (KRB5_KDC_UNREACH, KRB5_REALM_UNKNOWN):
        return ("Kerberos: cannot reach a KDC for the realm of "
                f"{principal} (check [realms] in krb5.conf, DNS SRV records and "
                "the firewall for port 88)"), FailureKind.KDC_UNREACHABLE
    if code in (KRB_AP_ERR_SKEW, KRB5_KDCREP_SKEW):
        return ("Kerberos: clock skew too great between this host, the KDC and the server "
                "(keep all within 5 minutes of each other, e.g. with chrony or w32time)"), \
            FailureKind.CLOCK_SKEW
    if code == KDC_ERR_C_PRINCIPAL_UNKNOWN:
        return (f"Kerberos: the KDC does not know the client principal {principal} "
                "(check username and kerberos.realm)"), FailureKind.AUTH
    if code in (KDC_ERR_PREAUTH_FAILED, KRB_AP_ERR_BAD_INTEGRITY, KRB5_PREAUTH_FAILED):
        return (f"Kerberos: wrong password or key for {principal} "
                "(preauthentication failed)"), FailureKind.AUTH
    if code == KDC_ERR_S_PRINCIPAL_UNKNOWN:
        return (f"Kerberos: no service principal {spn} in the KDC (register it with "
                "setspn, or set kerberos.spn; see docs/windows-setup.md)"), FailureKind.AUTH
    if code in (KRB_AP_ERR_TKT_EXPIRED, KDC_ERR_NAME_EXP):
        return f"Kerberos: the ticket of {principal} has expired", FailureKind.AUTH
    if code == KRB_AP_ERR_TKT_NYV:
        return ("Kerberos: clock skew: the server says the ticket is not yet valid (the "
                "KDC's clock is ahead of the server's; keep all within 5 minutes)"), \
            FailureKind.CLOCK_SKEW
    if code == KDC_ERR_KEY_EXP:
        return f"Kerberos: the password of {principal} has expired", FailureKind.AUTH
    if code == KDC_ERR_CLIENT_REVOKED:
        return f"Kerberos: the account {principal} is disabled or locked out", FailureKind.AUTH
    if code in (KRB5_KT_NOTFOUND, KRB5_KT_END):
        return f"Kerberos: the keytab has no key for {principal}", FailureKind.AUTH
    if code in (KRB5_FCC_NOFILE, KRB5_CC_NOTFOUND):
        return ("Kerberos: no ticket in the credential cache (run kinit, or configure a "
                "password or keytab)"), FailureKind.AUTH
    if code == KRB5_CONFIG_NODEFREALM:
        return ("Kerberos: no realm for the client principal (set kerberos.realm or "
                "default_realm in krb5.conf)"), FailureKind.AUTH
    return None


class KerberosError(CollectorError):
    pass


NOT_INSTALLED = ("Kerberos support is not installed (pip install "
                 "'citrix-license-exporter[kerberos]'; it needs Debian's libkrb5-3)")


def principal_name(username: str, realm: str | None) -> str:
    """``user@REALM`` from ``user``, ``user@REALM`` or ``DOMAIN\\user`` and the configured realm."""
    name = username.split("\\", 1)[1] if "\\" in username else username
    if "@" not in name and realm:
        name = f"{name}@{realm}"
    return name


# ---------------------------------------------------------------------------------------------
# The private credential caches


@dataclass
class _Ticket:
    ccache: str  # "FILE:<private dir>/<name>"
    principal: str
    start: float  # epoch seconds
    end: float

    def fresh(self, now: float) -> bool:
        """Not yet due for renewal."""
        margin = min(REFRESH_MARGIN, (self.end - self.start) / 4)
        return now < self.end - margin

    def usable(self, now: float) -> bool:
        """Due for renewal but still good for one more collection."""
        return now < self.end - min(5.0, (self.end - self.start) / 8)


class _Slot:
    """One principal and source: the current ticket, and the kinit in flight (at most one)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ticket: _Ticket | None = None
        self.running: threading.Thread | None = None
        self.done = threading.Event()
        self.error: BaseException | None = None
        #: The KDC refused these credentials (wrong password, unknown or locked principal):
        #: not asked again with the same ones before this time (monotonic seconds).
        self.refused_until = 0.0


class CredentialStore:
    """Credential caches of this process, one per (principal, password or keytab)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._dir: str | None = None
        # Slots are keyed by an HMAC of the secret under a key that never leaves this process,
        # so a changed password gets a new ticket and the key holds nothing that can be used.
        self._key = os.urandom(32)
        self.kinits = 0  # AS exchanges done, for tests
        #: Wall-clock time, as ticket times are (a test may set a fake clock).
        self.clock: Callable[[], float] = time.time

    def _directory(self) -> str:
        with self._lock:
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="citrix-exporter-krb5-")  # mode 0700
                atexit.register(shutil.rmtree, self._dir, True)
            return self._dir

    def _slot(self, key: str) -> _Slot:
        with self._lock:
            return self._slots.setdefault(key, _Slot())

    def ticket(self, principal: str, *, password: str | None, keytab: str | None,
               deadline: Deadline, spn: str) -> _Ticket:
        """A fresh ticket-granting ticket for ``principal`` in a private cache."""
        principal = _full_name(principal)
        material = (password or "").encode("utf-8") + b"\0" + (keytab or "").encode("utf-8")
        digest = hmac.new(self._key, principal.encode("utf-8") + b"\0" + material,
                          hashlib.sha256).hexdigest()[:32]
        slot = self._slot(digest)
        with slot.lock:
            if slot.ticket is not None and slot.ticket.fresh(self.clock()):
                return slot.ticket
            if slot.error is not None and time.monotonic() < slot.refused_until:
                # Each try with a wrong password is a failed logon in the domain: asking every
                # minute would lock the account out.
                raise slot.error
            if slot.running is None:
                slot.done.clear()
                slot.error = None
                path = os.path.join(self._directory(), f"cc-{digest}")
                slot.running = threading.Thread(
                    target=self._kinit, args=(slot, principal, password, keytab, path, spn),
                    name="kerberos-kinit", daemon=True,
                )
                slot.running.start()
        answered = slot.done.wait(deadline.remaining())
        with slot.lock:
            current = slot.ticket
            if (not answered or slot.error is not None) and current is not None \
                    and current.usable(self.clock()):
                # Renewing early failed (or is still waiting on the KDC): the ticket in use
                # has not expired yet, so the collection goes on with it.
                return current
            if not answered:
                raise KerberosError(
                    f"Kerberos: the KDC did not answer within the probe deadline (getting a "
                    f"ticket for {principal})", kind=FailureKind.KDC_UNREACHABLE)
            if slot.error is not None:
                raise slot.error
            assert current is not None
            return current

    def _kinit(self, slot: _Slot, principal: str, password: str | None, keytab: str | None,
               path: str, spn: str) -> None:
        try:
            import krb5
        except ImportError:
            with slot.lock:
                slot.error, slot.running = KerberosError(NOT_INSTALLED), None
                slot.done.set()
            return

        ticket: _Ticket | None = None
        error: BaseException | None = None
        try:
            ctx = krb5.init_context()
            client = krb5.parse_name_flags(ctx, principal.encode("utf-8"))
            principal = krb5.unparse_name_flags(ctx, client).decode("utf-8", "replace")
            opt = krb5.get_init_creds_opt_alloc(ctx)
            self.kinits += 1
            if keytab is not None:
                kt = krb5.kt_resolve(ctx, f"FILE:{keytab}".encode())
                creds = krb5.get_init_creds_keytab(ctx, client, opt, kt)
            else:
                creds = krb5.get_init_creds_password(
                    ctx, client, opt, password=(password or "").encode("utf-8"))
            # Written beside the cache in use, then renamed over it: a collection reading the
            # cache meanwhile sees the old or the new file, never half of one.
            staging = f"{path}.new"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging)
            cc = krb5.cc_resolve(ctx, f"FILE:{staging}".encode())
            krb5.cc_initialize(ctx, cc, creds.client)
            krb5.cc_store_cred(ctx, cc, creds)
            os.replace(staging, path)
            times = creds.times
            ticket = _Ticket(f"FILE:{path}", principal, float(times.starttime or times.authtime),
                             float(times.endtime))
        except krb5.Krb5Error as exc:
            reason, kind = describe(exc.err_code, principal=principal, spn=spn)
            if _signed(exc.err_code) in REFUSALS:
                reason += f" (not asked again with these credentials for {RETRY_REFUSED:.0f} s)"
                with slot.lock:
                    slot.refused_until = time.monotonic() + RETRY_REFUSED
            error = KerberosError(reason, kind=kind)
        except Exception as exc:  # a defect or an unusable keytab file: say which, no secret
            error = KerberosError(f"Kerberos: getting a ticket for {principal} failed "
                                  f"({type(exc).__name__})")
        with slot.lock:
            slot.ticket = ticket if ticket is not None else slot.ticket
            slot.error = error
            slot.running = None
            slot.done.set()


STORE = CredentialStore()


def _full_name(principal: str) -> str:
    """``user@REALM``, the realm from krb5.conf's default_realm when not given (no KDC asked)."""
    try:
        import krb5

        ctx = krb5.init_context()
        name = krb5.parse_name_flags(ctx, principal.encode("utf-8"))
        return krb5.unparse_name_flags(ctx, name).decode("utf-8", "replace")
    except Exception:  # not installed, or no default realm: the kinit will say so
        return principal


class _Bounded:
    """Work that may block in libkrb5 (a KDC exchange), run in its own thread so the probe can
    stop waiting at its deadline; one at a time per key, later callers wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, tuple[threading.Event, list[BaseException | None]]] = {}

    def run(self, key: str, work: Callable[[], None], deadline: Deadline, what: str) -> None:
        with self._lock:
            entry = self._running.get(key)
            if entry is None:
                entry = (threading.Event(), [None])
                self._running[key] = entry
                threading.Thread(target=self._work, args=(key, work, entry), daemon=True,
                                 name="kerberos-kdc").start()
        done, result = entry
        if not done.wait(deadline.remaining()):
            raise KerberosError(f"Kerberos: the KDC did not answer within the probe deadline "
                                f"({what})", kind=FailureKind.KDC_UNREACHABLE)
        if result[0] is not None:
            raise result[0]

    def _work(self, key: str, work: Callable[[], None],
              entry: tuple[threading.Event, list[BaseException | None]]) -> None:
        try:
            work()
        except BaseException as exc:  # handed to the waiting probe
            entry[1][0] = exc
        finally:
            with self._lock:
                self._running.pop(key, None)
            entry[0].set()


_BOUNDED = _Bounded()


def fetch_service_ticket(ccache: str, service: str, host: str, deadline: Deadline) -> None:
    """Get the ticket for ``service/host`` into ``ccache`` now, bounded by the deadline, so
    the security context made in the collection thread finds it cached and waits on no KDC."""

    def work() -> None:
        import gssapi
        import gssapi.raw

        try:
            creds = gssapi.Credentials(usage="initiate", store={"ccache": ccache})
            name = gssapi.Name(f"{service}@{host}", name_type=gssapi.NameType.hostbased_service)
            gssapi.SecurityContext(name=name, creds=creds, usage="initiate",
                                   mech=gssapi.MechType.kerberos).step()
        except gssapi.raw.GSSError as exc:
            reason, kind = describe(exc.min_code, principal="the client",
                                    spn=f"{service}/{host}")
            raise KerberosError(reason, kind=kind) from None

    _BOUNDED.run(f"{ccache}\0{service}/{host}", work, deadline,
                 f"getting a ticket for {service}/{host}")


def existing_cache(name: str | None, spn: str) -> spnego.KerberosCCache:
    """The credential cache someone else keeps (``name``, else KRB5CCNAME / the default), checked
    for a ticket that has not expired."""
    try:
        import gssapi
        import gssapi.exceptions
        import gssapi.raw
        import krb5
    except ImportError:
        raise KerberosError(NOT_INSTALLED) from None

    ctx = krb5.init_context()
    cache = name or krb5.cc_default_name(ctx).decode("utf-8", "replace")
    try:
        cc = krb5.cc_resolve(ctx, cache.encode("utf-8"))
        principal = krb5.cc_get_principal(ctx, cc).name
        who = principal.decode("utf-8", "replace") if principal else "the cached principal"
    except krb5.Krb5Error as exc:
        reason, kind = describe(exc.err_code, principal="the cached principal", spn=spn)
        raise KerberosError(f"{reason} ({cache})", kind=kind) from None
    try:
        creds = gssapi.Credentials(usage="initiate", store={"ccache": cache})
        lifetime = creds.lifetime
    except gssapi.exceptions.ExpiredCredentialsError:
        raise KerberosError(
            f"Kerberos: the ticket of {who} in {cache} has expired (renew it with kinit, or "
            "configure a password or keytab so the exporter renews it)",
            kind=FailureKind.AUTH) from None
    except gssapi.raw.GSSError as exc:
        reason, kind = describe(exc.min_code, principal=who, spn=spn)
        raise KerberosError(f"{reason} ({cache})", kind=kind) from None
    if lifetime is not None and lifetime <= 0:
        raise KerberosError(f"Kerberos: the ticket of {who} in {cache} has expired",
                            kind=FailureKind.AUTH)
    return spnego.KerberosCCache(ccache=cache, principal=who)
