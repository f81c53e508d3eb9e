"""``pgpoolsync`` command line: parse, wire the parts together, map outcomes to exit codes."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from pgpoolsync import logsetup, metrics, model, pcp, reconcile, sources, tls
from pgpoolsync.dirsource import DirWatcher, SecretsDirError, read_secrets_dir
from pgpoolsync.presets import PRESETS, Preset
from pgpoolsync.settings import Common, ExporterSettings, RunSettings, UsageError, parse
from pgpoolsync.writer import KeyFileError

log = logging.getLogger("pgpoolsync")

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2


def _read_hba(common: Common) -> str | None:
    if common.pool_hba_file is None:
        return None
    try:
        return common.pool_hba_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--pool-hba-file {common.pool_hba_file}: {exc}") from None


def _tls(
    common: Common, secret: Callable[[], dict[str, bytes] | None] | None = None
) -> Callable[[], sources.TlsResult]:
    try:
        return sources.tls_source(
            mode=common.tls,
            config_dir=common.config_dir,
            tls_dir=common.tls_dir,
            names=[*common.tls_names, *tls.default_names(None, None)],
            secret=secret,
        )
    except ValueError as exc:  # --tls secret without a place to read it from
        raise UsageError(str(exc)) from None


def cmd_render(common: Common) -> int:
    secrets = read_secrets_dir(common.secrets_dir) if common.secrets_dir else []
    creds = sources.credentials_from_dir(secrets, sources.KeyConfig())
    material, tls_problem = _tls(common)()
    inputs = reconcile.inputs_from(
        common,
        credentials=creds,
        hba_text=_read_hba(common),
        tls=material,
        problems=[tls_problem] if tls_problem else [],
    )
    result = reconcile.apply_once(common, inputs, strict=True)
    for problem in (*common.env_warnings, *result.outcome.problems):
        level = "error" if problem.fatal else "warning"
        print(f"pgpoolsync: {level}: {problem}", file=sys.stderr)
    if not result.written:
        print("pgpoolsync: nothing written: fix the errors above", file=sys.stderr)
        return EXIT_INPUT
    state = result.outcome.state
    assert state is not None
    if result.changed:
        log.info(
            "wrote %s in %s (%d users, %s entries)",
            ", ".join(result.changed),
            common.config_dir,
            len(state.credentials),
            state.password_format,
        )
    else:
        log.info("%s is up to date (%d users)", common.config_dir, len(state.credentials))
    return EXIT_OK


def _param(common: Common, name: str) -> str | None:
    value = dict(model.DEFAULT_PARAMS).get(name)
    for p in common.env_params:
        if p.name == name:
            value = p.value
    return value


def _preset(run: RunSettings) -> Preset | None:
    if run.preset is None:
        return None
    return PRESETS[run.preset].fill(run.cluster or "")


def _keys(preset: Preset | None) -> sources.KeyConfig:
    if preset is None:
        return sources.KeyConfig()
    return sources.KeyConfig(
        user_keys=preset.user_keys,
        password_keys=preset.password_keys,
        fixed_users=preset.fixed_users,
    )


def _restarter(common: Common, run: RunSettings) -> Callable[[], bool] | None:
    if run.restart_policy != "signal":
        return None
    pid_file = run.pgpool_pid_file or _param(common, "pid_file_name")

    def restart() -> bool:
        try:
            pid = int(Path(pid_file or "").read_text().split()[0])
            os.kill(pid, signal.SIGINT)
        except (OSError, ValueError, IndexError) as exc:
            log.error("restart policy: cannot signal pgpool via %s: %s", pid_file, exc)
            return False
        return True

    return restart


class _Kube:
    """The Kubernetes side of `run`: watchers, snapshot, Events, health."""

    def __init__(
        self,
        common: Common,
        run: RunSettings,
        *,
        preset: Preset | None,
        notify: Callable[[], None],
        m: metrics.Metrics,
    ) -> None:
        from pgpoolsync import kube  # noqa: PLC0415 - the kubernetes client loads only for --kube

        api = kube.load_api_client(kubeconfig=run.kubeconfig)
        ns = run.namespace or kube.in_cluster_namespace() or "default"
        selector = run.secret_selector or (preset.secret_selector if preset else None)
        names = run.secret_names or (preset.secret_names if preset else ())
        primary = run.primary_service or (preset.primary_service if preset else None)
        replica = run.replica_service or (preset.replica_service if preset else None)
        static = reconcile.static_backends(common)
        if not static and not primary:
            raise UsageError(
                "--kube needs --primary-service (or --preset/--cluster, or --primary-host)"
            )
        if not selector and not names:
            log.warning("no --secret-selector or --secret-names: only env users are synced")

        def restart(kind: str, reason: str) -> None:
            m.watch_restarts.labels(kind, reason).inc()

        def watcher(c: kube.Collection) -> kube.Watcher:
            return kube.Watcher(
                api, c, notify=notify, on_restart=restart, timeout_seconds=run.watch_timeout_seconds
            )

        self.secret_watchers = []
        if selector:
            self.secret_watchers.append(watcher(kube.Collection("secrets", ns, selector)))
        for name in names:
            self.secret_watchers.append(
                watcher(kube.Collection("secrets", ns, field_selector=f"metadata.name={name}"))
            )
        self.watchers = list(self.secret_watchers)
        services = slices = None
        if not static:
            services = watcher(kube.Collection("services", ns))
            self.watchers.append(services)
            if replica:
                slices = watcher(
                    kube.Collection(
                        "endpointslices", ns, label_selector=f"kubernetes.io/service-name={replica}"
                    )
                )
                self.watchers.append(slices)
        self.tls_watcher: kube.Watcher | None = None
        if run.tls_secret:
            self.tls_watcher = watcher(
                kube.Collection("secrets", ns, field_selector=f"metadata.name={run.tls_secret}")
            )
            self.watchers.append(self.tls_watcher)
        self.timeout = run.watch_timeout_seconds
        for kind in {w.collection.kind for w in self.watchers}:
            m.watch_staleness.labels(kind).set_function(self._staleness(kind))
            for reason in ("gone", "stream"):
                m.watch_restarts.labels(kind, reason)  # present from the start, at 0
        self.recorder = kube.EventRecorder(api, namespace=ns, pod_name=run.pod_name)

        def all_secrets() -> list[dict[str, object]]:
            out: dict[str, dict[str, object]] = {}
            for w in self.secret_watchers:
                for obj in w.snapshot():
                    out[str((obj.get("metadata") or {}).get("name"))] = obj
            return [out[k] for k in sorted(out)]

        self.snapshot = sources.kube_snapshot(
            names=sources.KubeNames(ns, primary or "", replica, run.service_address),
            keys=_keys(preset),
            secrets=all_secrets,
            services=services.snapshot if services else list,
            slices=slices.snapshot if slices else list,
            secret_data=kube.secret_data,
            static_backends=static,
        )

    def tls_secret(self) -> dict[str, bytes] | None:
        from pgpoolsync import kube  # noqa: PLC0415

        assert self.tls_watcher is not None
        objs = self.tls_watcher.snapshot()
        return kube.secret_data(objs[0]) if objs else None

    def _staleness(self, kind: str) -> Callable[[], float]:
        same = [w for w in self.watchers if w.collection.kind == kind]
        return lambda: max(w.stale_for() for w in same)

    def start(self, *, sync_timeout: float) -> None:
        for w in self.watchers:
            w.start()
        for w in self.watchers:
            if not w.synced.wait(sync_timeout):
                raise RuntimeError(
                    f"could not list {w.collection.describe()} within {sync_timeout:.0f}s"
                )

    def stop(self) -> None:
        for w in self.watchers:
            w.stop()

    def healthy(self) -> tuple[bool, str]:
        limit = self.timeout * 2 + 30
        for w in self.watchers:
            if w.stale_for() > limit:
                return False, f"watch {w.collection.describe()} stale for {w.stale_for():.0f}s"
        return True, "ok"

    def report(self, problem: model.Problem, reason: str) -> None:
        if problem.source.startswith("secret "):
            name = problem.source.split("/", 1)[-1]
            self.recorder.event(reason=reason, message=str(problem), kind="Secret", name=name)
        self.recorder.event(reason=reason, message=str(problem))


def cmd_run(common: Common, run: RunSettings) -> int:
    if not common.pcp_users:
        raise UsageError(
            "run reloads pgpool over PCP and needs a PCP user: --pcp-user with "
            "--pcp-password-file, or PGPOOL_PCP_USER/PGPOOL_PCP_PASSWORD"
        )
    pcp_user = common.pcp_users[0]
    preset = _preset(run)
    if preset is not None and preset.tls and common.tls == "off":
        log.warning(
            "--tls off with --preset %s: %s clusters accept only TLS connections, so "
            "pgpool will not reach the backends",
            preset.name,
            preset.name,
        )
    pcp_port = run.pcp_port or int(_param(common, "pcp_port") or 9898)
    registry = CollectorRegistry()
    m = metrics.Metrics(registry)
    change = reconcile.ChangeSignal()
    hba_text = _read_hba(common)

    def reload() -> None:
        pcp.reload_pgpool(run.pcp_host, pcp_port, pcp_user.user, pcp_user.password)

    kube_side: _Kube | None = None
    dir_watchers: list[DirWatcher] = []
    if run.kube:
        kube_side = _Kube(common, run, preset=preset, notify=change.notify, m=m)
        tls_secret = kube_side.tls_secret if kube_side.tls_watcher else None
        snapshot = sources.with_tls(kube_side.snapshot, _tls(common, tls_secret))
        kube_side.start(sync_timeout=max(30.0, run.watch_timeout_seconds * 1.1 + 5))
    else:
        snapshot = sources.with_tls(
            sources.dir_snapshot(common.secrets_dir, _keys(preset)), _tls(common)
        )
        if not run.once:
            for watched in (common.secrets_dir, common.tls_dir):
                if watched is not None:
                    dir_watchers.append(DirWatcher(watched, change.notify))
                    dir_watchers[-1].start()

    loop = reconcile.Loop(
        common=common,
        snapshot=snapshot,
        reload=reload,
        signal=change,
        metrics=m,
        hba_text=hba_text,
        report=kube_side.report if kube_side else None,
        restart=_restarter(common, run),
        resync_seconds=run.resync_seconds or 300,
    )
    if run.once:
        loop.step()
        if loop.pending_reload:
            log.info("pgpool not reachable for reload; it reads the files when it starts")
        return EXIT_OK if loop.ready.is_set() else EXIT_INPUT

    def healthy() -> tuple[bool, str]:
        if kube_side:
            return kube_side.healthy()
        if any(not w.is_alive() for w in dir_watchers):
            return False, "a directory watcher stopped"
        return True, "ok"

    host, port = metrics.parse_listen(run.listen)
    server = metrics.serve(
        registry=registry, healthy=healthy, ready=loop.ready.is_set, host=host, port=port
    )
    log.info("serving /metrics /healthz /readyz on %s:%d", host, server.server_address[1])
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()
        change.notify()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        loop.run(stop)
    finally:
        server.shutdown()
        if kube_side:
            kube_side.stop()
        for w in dir_watchers:
            w.stop()
    return EXIT_OK


def cmd_exporter(settings: ExporterSettings) -> int:
    from pgpoolsync.exporter import Scraper, mask  # noqa: PLC0415 - only this command needs psycopg

    registry = CollectorRegistry()
    scraper = Scraper(conninfo=settings.conninfo, password=settings.password)
    host, port = metrics.parse_listen(settings.listen)
    server = metrics.serve(
        registry=registry,
        healthy=lambda: (True, "ok"),
        ready=lambda: True,
        host=host,
        port=port,
        extra=lambda: metrics.exposition(scraper.scrape()),
    )
    log.info(
        "exporting pgpool metrics from %s on %s:%d",
        mask(settings.conninfo),
        host,
        server.server_address[1],
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    stop.wait()
    server.shutdown()
    return EXIT_OK


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = parse(argv, environ)
    except UsageError as exc:
        print(f"pgpoolsync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logsetup.configure(level=settings.log_level, fmt=settings.log_format)
    try:
        if settings.command == "render":
            assert settings.common is not None
            return cmd_render(settings.common)
        if settings.command == "exporter":
            assert settings.exporter is not None
            return cmd_exporter(settings.exporter)
        if settings.command == "run":
            assert settings.common is not None and settings.run is not None
            return cmd_run(settings.common, settings.run)
    except UsageError as exc:
        print(f"pgpoolsync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (SecretsDirError, KeyFileError) as exc:
        print(f"pgpoolsync: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    print(f"pgpoolsync: unknown command {settings.command}", file=sys.stderr)
    return EXIT_USAGE
