"""The PoP gateway agent: enrol, long-poll the desired state, converge, publish keys, ack.

Fail-static: the WireGuard interfaces (wireguard-go daemons), routes and nftables rules
outlive the agent, so traffic keeps flowing while the agent or the control plane is away. The
last applied state is on disk; an agent started while the control plane is unreachable
applies it again, and reconciles once the control plane answers.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import logging
import math
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpcore
import httpx

from tongdao import __version__, validation
from tongdao.agent import firewall, host, xborder
from tongdao.agent.engine import (
    ENGINE_MIN_VERSION,
    DeviceState,
    Engine,
    EngineBuild,
    EngineError,
    InterfaceNotFound,
    PeerState,
    WireGuardGoEngine,
)
from tongdao.agent.planner import InterfacePlan, Plan, plan
from tongdao.agent.state import StateDir
from tongdao.errors import TongdaoError
from tongdao.gateway.desired import (
    DeltaMismatch,
    DesiredDelta,
    DesiredState,
    TenantInterface,
    merge,
)
from tongdao.gateway.schemas import ACK_ERROR_MAX

log = logging.getLogger("tongdao.agent.gateway")

POLL_WAIT = 25.0
BACKOFF_MAX = 10.0
RECONCILE_EVERY = 60.0  # seconds between full reads of the engine (repairs drift, lost daemons)


class AgentError(TongdaoError):
    """The agent cannot go on (no credential, refused enrolment)."""


class Stopping(Exception):
    """The agent was asked to stop before a long poll began."""


def resolve_endpoint(endpoint: str) -> str:
    """``host:port`` with a DNS name → the first address it resolves to (UAPI wants IPs)."""
    hostpart, _, port = endpoint.rpartition(":")
    name = hostpart.strip("[]")
    try:
        ipaddress.ip_address(name)
        return endpoint
    except ValueError:
        pass
    infos = socket.getaddrinfo(name, int(port), type=socket.SOCK_DGRAM)
    address = str(infos[0][4][0])
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _resolved(desired: DesiredState) -> DesiredState:
    tenants = []
    for t in desired.tenants:
        peers = tuple(
            p
            if p.endpoint is None
            else p.model_copy(update={"endpoint": resolve_endpoint(p.endpoint)})
            for p in t.peers
        )
        tenants.append(t.model_copy(update={"peers": peers}))
    return desired.model_copy(update={"tenants": tuple(tenants)})


def key_name(tenant: TenantInterface) -> str:
    """Under which name the state dir keeps an interface's private key: the tenant's id."""
    return str(tenant.tenant_id)


def table_of(ifname: str) -> int | None:
    suffix = ifname.removeprefix("wgt")
    return int(suffix) if suffix != ifname and suffix.isdigit() else None


class Applier:
    """Converges the host on a desired state. Every step is idempotent, so an apply that was
    killed half way is finished by the next one."""

    def __init__(self, engine: Engine, state: StateDir, netns: str | None = None) -> None:
        self.engine = engine
        self.state = state
        self.netns = netns
        self._ruleset: dict[str, Any] | None = None  # last applied by this process
        self._counted: object = None  # the cross-border counters last applied (xborder)
        self._forwarding = False
        # The interfaces as this process last left them, so that one change is planned
        # against memory instead of reading thousands of peers back from the engine. Cleared
        # by any failure; re-read in full on start and every ``reconcile`` (see the agent).
        self._known: dict[str, DeviceState] = {}
        # The tenants as applied into ``_known`` (resolved): their unchanged peers (the same
        # objects in the next state, which a delta's merge keeps) are not planned again.
        self._applied: dict[str, TenantInterface] = {}
        self.read_at = -math.inf  # time.monotonic() of the last full read of the engine

    def _actual(self, names: set[str], reread: bool) -> dict[str, DeviceState | None]:
        if not reread and names <= self._known.keys():
            return {name: self._known[name] for name in names}
        self._known.clear()
        self._applied.clear()
        actual: dict[str, DeviceState | None] = {}
        for name in sorted(names):
            try:
                actual[name] = self.engine.get(name)
            except (InterfaceNotFound, EngineError):
                actual[name] = None
        self.read_at = time.monotonic()
        return actual

    def _remember(self, step: InterfacePlan, before: DeviceState | None, key: str) -> None:
        """What the interface holds after ``step`` succeeded."""
        peers = dict(before.peers) if before is not None else {}
        for removed in step.removals:
            peers.pop(removed, None)
        for cfg in step.upserts:
            was = peers.get(cfg.public_key)
            if was is None:
                peers[cfg.public_key] = PeerState(
                    public_key=cfg.public_key,
                    allowed_ips=cfg.allowed_ips,
                    endpoint=cfg.endpoint,
                    last_handshake=None,
                    rx_bytes=0,
                    tx_bytes=0,
                    keepalive=cfg.keepalive or None,
                    has_preshared_key=False,
                )
            else:
                peers[cfg.public_key] = was._replace(
                    allowed_ips=cfg.allowed_ips,
                    endpoint=cfg.endpoint or was.endpoint,
                    keepalive=cfg.keepalive or None,
                )
        self._known[step.ifname] = DeviceState(
            ifname=step.ifname,
            has_private_key=True,
            public_key=key,
            listen_port=step.tenant.listen_port,
            fwmark=before.fwmark if before is not None else None,
            peers=peers,
        )

    def apply(self, desired: DesiredState, *, reread: bool = False) -> None:
        """Converge on ``desired``. ``reread``: read every interface back from the engine
        instead of trusting what this process set last (done on start and periodically)."""
        # An apply allocates in bursts (a full sync: tens of thousands of objects, none of them
        # cyclic garbage) while the agent holds a large live state: the cyclic collector would
        # walk all of it mid-apply, more than once. It is switched off for the apply and
        # resumes after it.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._apply(desired, reread)
        except BaseException:
            self._known.clear()  # whatever happened half way, read the truth next time
            self._applied.clear()
            raise
        finally:
            if collecting:
                gc.enable()

    def _host(self, desired: DesiredState, the_plan: Plan, connector: bool) -> None:
        """Links, addresses, tables, and on a PoP the ``ip rule``s, the tenant firewall and
        the cross-border counters: what an apply does outside the engine."""
        for step in the_plan.interfaces:
            name = step.ifname
            host.link_up(name, self.netns)
            host.ensure_addresses(
                name, [step.tenant.address_v4, step.tenant.address_v6], self.netns
            )
            host.ensure_table(
                name, step.tenant.table, step.routes, self.netns, exclusive=not connector
            )
        if not connector:
            # A PoP: per-tenant tables chosen by incoming interface, and the tenant firewall
            # (one atomic replace, skipped when what this process applied last is unchanged).
            host.ensure_rules(the_plan.rules, self.netns)
            ruleset = firewall.compile_ruleset(desired.tenants)
            if self._ruleset is None:
                firewall.install_ruleset(ruleset, self.netns)
            elif ruleset != self._ruleset:
                firewall.apply_ruleset(ruleset, self.netns)
            self._ruleset = ruleset
            # Cross-border byte counters (their own table, changed in place: see xborder).
            counted = xborder.signature(desired.tenants)
            if counted != self._counted:
                xborder.apply_counters(desired.tenants, self.netns)
                self._counted = counted

    def _apply(self, desired: DesiredState, reread: bool) -> None:
        desired = _resolved(desired)
        connector = desired.role == "connector"
        wanted = {t.ifname for t in desired.tenants}
        owned = self.state.owned()
        # Keys belong to the tenant, not to the interface: a tenant suspended and reactivated
        # (or moved to another port) keeps its key, so devices' configs stay valid.
        keys = {t.ifname: self.state.public_key(key_name(t)) for t in desired.tenants}
        actual = self._actual(owned | wanted, reread)
        the_plan = plan(desired, actual, keys, self._applied)
        # Claim the interfaces before creating them: a crash mid-way still knows they are ours.
        if not wanted <= owned:
            self.state.save_owned(owned | wanted)
        if not self._forwarding:  # once per process (two sysctl runs otherwise each apply)
            host.enable_forwarding(self.netns)
            self._forwarding = True
        # Engine first, in order: every interface exists with its key and port before
        # anything routes into it.
        for step in the_plan.interfaces:
            name = step.ifname
            if step.create:
                self.engine.ensure_interface(name, self.netns)
            if step.configure_key or step.configure_port:
                self.engine.configure(
                    name,
                    private_key=(
                        self.state.private_key(key_name(step.tenant))
                        if step.configure_key
                        else None
                    ),
                    listen_port=step.tenant.listen_port,
                )
        # The peers' sets run on a thread of their own (one after the other: the engine
        # sees one request at a time) while this thread does the host's part, which touches
        # no engine: a full sync of 10,000 peers keeps wireguard-go busy for seconds, and the
        # routes, rules and firewall fit in that time instead of after it. The firewall's
        # update starts with the sets rather than after them, so the moment a new interface's
        # peers are set before the table knows the interface is never longer than it was.
        with ThreadPoolExecutor(1, thread_name_prefix="tongdao-set") as sets:
            setting = [
                sets.submit(self.engine.set_peers, step.ifname, step.upserts, step.removals)
                for step in the_plan.interfaces
                if step.changes_peers
            ]
            try:
                self._host(desired, the_plan, connector)
            finally:
                done = [future.exception() for future in setting]  # waits for every set
        for error in done:
            if error is not None:
                raise error
        for step in the_plan.interfaces:
            self._remember(step, actual.get(step.ifname), keys[step.ifname])
            self._applied[step.ifname] = step.tenant
        for name in the_plan.delete:
            table = table_of(name)
            if table is not None:
                host.flush_table(table, self.netns)
            self.engine.delete_interface(name)
            self._known.pop(name, None)
            self._applied.pop(name, None)
        if owned | wanted != wanted:
            self.state.save_owned(wanted)
        self.state.save_applied(desired)
        log.info(
            "applied version %d: %d tenant interfaces, %d removed",
            desired.version,
            len(the_plan.interfaces),
            len(the_plan.delete),
        )


class _TrackedStream(httpcore.NetworkStream):
    """A connection's stream, known to its backend while open (TLS included: the stream
    ``start_tls`` returns is tracked too, its socket is the one reads block on)."""

    def __init__(self, inner: httpcore.NetworkStream, backend: InterruptibleBackend) -> None:
        self.inner = inner
        self.backend = backend
        backend.track(self)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self.backend.interrupted:
            raise httpcore.ReadError("interrupted: the agent is stopping")
        return self.inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self.backend.interrupted:
            raise httpcore.WriteError("interrupted: the agent is stopping")
        self.inner.write(buffer, timeout)

    def close(self) -> None:
        self.backend.forget(self)
        self.inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        self.backend.forget(self)
        return _TrackedStream(
            self.inner.start_tls(ssl_context, server_hostname, timeout), self.backend
        )

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class InterruptibleBackend(httpcore.SyncBackend):
    """httpcore's own backend, keeping the streams it opened so that :meth:`interrupt` can
    shut their sockets down: a read blocked on one (a long poll) returns at once and its
    request fails. Closing an httpx client does not do that: it closes the pool for the
    requests to come, while the one in flight waits for the server's answer (tried: a
    request 8 s from its answer went on for those 8 s after ``close()``).

    The interruption sticks: a request that had not opened its connection yet when it came
    fails too, so no request can slip past it (the client is closed next)."""

    def __init__(self) -> None:
        super().__init__()
        self._streams: weakref.WeakSet[_TrackedStream] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.interrupted = False

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if self.interrupted:
            raise httpcore.ConnectError("interrupted: the agent is stopping")
        stream = super().connect_tcp(host, port, timeout, local_address, socket_options)
        return _TrackedStream(stream, self)

    def track(self, stream: _TrackedStream) -> None:
        with self._lock:
            self._streams.add(stream)

    def forget(self, stream: _TrackedStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def interrupt(self) -> None:
        self.interrupted = True
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            sock = stream.get_extra_info("socket")
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def interruptible_transport() -> tuple[httpx.HTTPTransport, InterruptibleBackend]:
    """httpx's transport with its defaults (TLS verification, pool limits), over an
    :class:`InterruptibleBackend`. httpx takes no network backend, so the transport's pool
    is replaced by an equal one that has it (tests/agent/test_shutdown.py fails if this
    stops interrupting)."""
    backend = InterruptibleBackend()
    transport = httpx.HTTPTransport()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend,
    )
    return transport, backend


class ControlPlane:
    """The agent's HTTP client for the gateway API. :meth:`interrupt` ends the requests in
    flight (the agent's stop uses it on a long poll); :meth:`close` is for when no request
    can come any more."""

    def __init__(
        self, server: str, credential: str | None = None, *, timeout: float = 10.0
    ) -> None:
        self.server = server.rstrip("/")
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        transport, self.backend = interruptible_transport()
        self.http = httpx.Client(
            base_url=self.server, headers=headers, timeout=timeout, transport=transport
        )

    def interrupt(self) -> None:
        self.backend.interrupt()

    def close(self) -> None:
        self.http.close()

    def _check(self, resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.text[:200]
            raise AgentError(
                f"{resp.request.method} {resp.request.url.path}: {resp.status_code} {message}"
            )
        return resp.json() if resp.content else None

    def enrol(self, token: str) -> dict[str, str]:
        body = {"token": token, "hostname": socket.gethostname(), "agent_version": __version__}
        data: dict[str, str] = self._check(self.http.post("/api/v1/gateway/enrol", json=body))
        return data

    def desired_state(
        self, after: int, wait: float, base: DesiredState | None = None
    ) -> DesiredState:
        """The next state after version ``after``. With ``base`` (the state of version
        ``after`` this agent holds) the server may answer with only the changes, merged here."""
        use_delta = base is not None and base.version == after
        resp = self.http.get(
            "/api/v1/gateway/desired-state",
            params={"after": after, "wait": wait, "delta": use_delta},
            timeout=wait + 15,
        )
        data = self._check(resp)
        if not (isinstance(data, dict) and "base_version" in data):
            return DesiredState.model_validate(data)
        if base is None:
            raise AgentError("the control plane sent a delta without being asked for one")
        try:
            return merge(base, DesiredDelta.model_validate(data))
        except DeltaMismatch as exc:
            log.warning("%s; fetching the whole state", exc)
            return self.desired_state(after, 0)

    def publish_key(self, tenant: TenantInterface, public_key: str) -> None:
        self._check(
            self.http.put(
                f"/api/v1/gateway/interfaces/{tenant.tenant_id}", json={"public_key": public_key}
            )
        )

    def ack(self, version: int, error: str | None = None) -> None:
        if error is not None:  # as the server takes it (Ack.error): no controls, 2,000 at most
            error = validation.text_without_controls(error)[:ACK_ERROR_MAX]
        self._check(
            self.http.post("/api/v1/gateway/ack", json={"version": version, "error": error})
        )


class GatewayAgent:
    def __init__(
        self,
        server: str,
        state_dir: Path,
        *,
        token: str | None = None,
        netns: str | None = None,
        engine: Engine | None = None,
        poll_wait: float = POLL_WAIT,
        reconcile_every: float = RECONCILE_EVERY,
    ) -> None:
        self.server = server
        self.state = StateDir(state_dir)
        self.token = token
        self.netns = netns
        self.applier = Applier(engine or WireGuardGoEngine(), self.state, netns)
        self.poll_wait = poll_wait
        self.reconcile_every = reconcile_every
        self.stop_event = threading.Event()
        # stop() interrupts a long poll, and nothing else: the loop marks the poll under
        # this lock, so an apply, key publication or ack in progress runs to its end.
        # Reentrant: stop() also runs in a signal handler, on the loop's own thread.
        self._lock = threading.RLock()
        self._polling = False
        self.control: ControlPlane | None = None
        self.version = 0
        self.current: DesiredState | None = None  # the state of ``version``, as applied
        self.engine_build: EngineBuild | None = None

    def connect(self) -> ControlPlane:
        """Use the saved credential, or trade the enrolment token for one."""
        saved = self.state.credential()
        if saved is None:
            if not self.token:
                raise AgentError("not enrolled: give --token with an enrolment token")
            anonymous = ControlPlane(self.server)
            try:
                data = anonymous.enrol(self.token)
            finally:
                anonymous.close()
            self.state.save_credential(
                self.server, data["gateway_id"], data["pop_id"], data["credential"]
            )
            saved = self.state.credential()
            assert saved is not None
            log.info("enrolled as gateway %s of PoP %s", data["gateway_id"], data["pop_id"])
        return ControlPlane(self.server, saved["credential"])

    def restore(self) -> None:
        """Fail-static start: bring back the last applied state before asking for news."""
        applied = self.state.applied()
        if applied is None:
            return
        try:
            self.applier.apply(applied)
            # version stays 0: the first poll re-applies and acks (a crash may precede the ack)
            log.info("restored version %d from %s", applied.version, self.state.root)
        except TongdaoError as exc:
            log.error("could not restore the last applied state: %s", exc)

    def check_engine(self) -> EngineBuild:
        """Log the engine's build; warn when it is older than Tongdao is built for.

        A warning, not a refusal: an older wireguard-go is slower (no offloads: about a fifth
        of the throughput) but correct, and an agent that refused to start would leave the
        PoP unmanaged, so revoked devices would keep their access until someone upgraded."""
        build = self.applier.engine.build()
        self.engine_build = build
        if build.outdated:
            log.warning(
                "engine: %s is older than %s: no TUN/UDP offloads, about a fifth of the "
                "throughput; install wireguard-go %s or later (on Debian bookworm from "
                "bookworm-backports: make install), then restart the tenant interfaces",
                build.describe(),
                ENGINE_MIN_VERSION,
                ENGINE_MIN_VERSION,
            )
        elif build.outdated is None:
            log.info(
                "engine: %s; cannot tell whether it is %s or later (that release reports "
                "itself as 0.0.20230223)",
                build.describe(),
                ENGINE_MIN_VERSION,
            )
        else:
            log.info("engine: %s", build.describe())
        try:
            stale = self.applier.engine.replaced(sorted(self.state.owned()))
        except (OSError, ValueError) as exc:
            log.debug("could not tell which daemons run a replaced binary: %s", exc)
            stale = []
        if stale:
            log.warning(
                "engine: %d interfaces (%s) run a wireguard-go binary replaced since they "
                "started, so not %s; they change build only when their daemon restarts "
                '(see README, "The engine: wireguard-go from bookworm-backports")',
                len(stale),
                ", ".join(stale[:20]),
                build.describe(),
            )
        return build

    def _poll(self, control: ControlPlane) -> DesiredState:
        with self._lock:
            self._polling = True  # first: a stop() from here on interrupts the poll
            if self.stop_event.is_set():
                self._polling = False
                raise Stopping
        try:
            return control.desired_state(self.version, self.poll_wait, self.current)
        finally:
            with self._lock:
                self._polling = False

    def step(self) -> None:
        assert self.control is not None
        desired = self._poll(self.control)
        stale = time.monotonic() - self.applier.read_at >= self.reconcile_every
        if desired.version == self.version and desired == self.current and not stale:
            return
        error = None
        try:
            self.applier.apply(desired, reread=stale)
        except (TongdaoError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("apply of version %d failed: %s", desired.version, error)
        if error is None:
            self.version = desired.version
            self.current = desired
            for tenant in desired.tenants:
                ours = self.state.public_key(key_name(tenant))
                if tenant.public_key != ours:
                    self.control.publish_key(tenant, ours)
        self.control.ack(desired.version, error)

    def run(self, on_step: Callable[[], None] | None = None) -> None:
        """Until :meth:`stop`: the loop ends first, then its HTTP client is closed."""
        try:
            if self.engine_build is None:  # not yet checked (by reporter.start)
                self.check_engine()
            self.restore()
            self._loop(on_step)
        finally:
            if self.control is not None:
                self.control.close()

    def _loop(self, on_step: Callable[[], None] | None) -> None:
        backoff = 0.5
        while not self.stop_event.is_set():
            try:
                if self.control is None:
                    self.control = self.connect()
                self.step()
                backoff = 0.5
                if on_step:
                    on_step()
            except Stopping:
                break
            except (httpx.HTTPError, AgentError) as exc:
                if self.stop_event.is_set():
                    break  # the long poll stop() interrupted, or one that failed meanwhile
                log.warning("control plane: %s; retrying in %.1f s", exc, backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def stop(self) -> None:
        """Ask the loop to end: a long poll in progress is interrupted; an apply, key
        publication or ack in progress finishes (with its client still open) and the loop
        ends after it. :meth:`run` closes the client once the loop is over."""
        with self._lock:
            self.stop_event.set()
            if self._polling and self.control is not None:
                self.control.interrupt()
