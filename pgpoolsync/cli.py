"""``pgpoolsync`` command line: parse, wire the parts together, map outcomes to exit codes."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pgpoolsync import httpserve, logsetup, reconcile, wiring
from pgpoolsync.core.presets import Preset
from pgpoolsync.exporter import command as exporter_command
from pgpoolsync.pgpool.actuator import write_state
from pgpoolsync.pgpool.writer import KeyFileError, write_error
from pgpoolsync.report import metrics
from pgpoolsync.report.metrics import Metrics
from pgpoolsync.report.reporter import AsyncEvents, Reporter
from pgpoolsync.restart.rollout import DeploymentApi
from pgpoolsync.settings import Common, RunSettings, UsageError, parse
from pgpoolsync.sources import ChangeSignal, Source, SourceUnavailable
from pgpoolsync.sources.convert import keys_for
from pgpoolsync.sources.dirsource import SecretsDirError
from pgpoolsync.sources.env import scrubbed_env

if TYPE_CHECKING:
    from pgpoolsync.sources.kubesource import KubeSource

log = logging.getLogger("pgpoolsync")

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3  # render wrote the files, but some credentials were bad (named on stderr)


def exec_after_render(then: Sequence[str], environ: Mapping[str, str]) -> None:
    """Replace this process with ``then`` (pgpool as PID 1 in the drop-in image); never
    returns unless the exec fails (UsageError)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(then[0], list(then), scrubbed_env(environ))  # noqa: S606 - argv, no shell
    except OSError as exc:
        raise UsageError(f"cannot exec {then[0]}: {exc.strerror}") from None


def cmd_render(common: Common, *, strict: bool = False) -> int:
    snap = wiring.dir_source(common, None, watch=False).snapshot()
    outcome = wiring.builder(common, hba_text=wiring.read_hba(common))(snap)
    for problem in (*common.env_warnings, *outcome.problems):
        level = "error" if problem.fatal else "warning"
        print(f"pgpoolsync: {level}: {problem}", file=sys.stderr)
    state = outcome.state
    if state is None or (strict and outcome.errors):
        print("pgpoolsync: nothing written: fix the errors above", file=sys.stderr)
        return EXIT_INPUT
    try:
        changed = write_state(
            state,
            config_dir=common.config_dir,
            pool_key_file=common.pool_key_file,
            pool_key_seed=common.pool_key_seed_file,
        )
    except OSError as exc:  # the atomic writes leave no partial file behind
        print(
            f"pgpoolsync: error: {write_error(exc, common.config_dir)}; nothing written",
            file=sys.stderr,
        )
        return EXIT_INPUT
    if changed:
        log.info(
            "wrote %s in %s (%d users, %s entries)",
            ", ".join(changed),
            common.config_dir,
            len(state.credentials),
            state.password_format,
        )
    else:
        log.info("%s is up to date (%d users)", common.config_dir, len(state.credentials))
    if outcome.errors:
        print(
            "pgpoolsync: written without the credentials above (each keeps its last good "
            "entry, if it had one)",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    return EXIT_OK


def _kube_source(common: Common, run: RunSettings, preset: Preset | None, m: Metrics) -> KubeSource:
    from pgpoolsync.kube.errors import KubeConfigError  # noqa: PLC0415
    from pgpoolsync.sources import kubesource  # noqa: PLC0415 - the client loads only for --kube

    config = kubesource.resolve(
        preset=preset,
        namespace=run.namespace,
        secret_selector=run.secret_selector,
        secret_names=run.secret_names,
        primary_service=run.primary_service,
        replica_service=run.replica_service,
        service_address=run.service_address,
        tls_secret=run.tls_secret,
        watch_timeout_seconds=run.watch_timeout_seconds,
        pod_name=run.pod_name,
        topology=run.topology,
    )
    static = tuple(wiring.static_backends(common))
    if not static and not config.primary_service:
        raise UsageError(
            "--kube needs --primary-service (or --preset/--cluster, or --primary-host)"
        )
    try:
        return kubesource.KubeSource(
            config,
            kubeconfig=run.kubeconfig,
            keys=keys_for(preset),
            static_backends=static,
            tls=lambda secret: wiring.tls_reader(common, secret),
            metrics=m,
        )
    except KubeConfigError as exc:
        raise UsageError(str(exc)) from None


def cmd_run(common: Common, run: RunSettings) -> int:
    if not common.pcp_users and not run.once:
        raise UsageError(
            "run reloads pgpool over PCP and needs a PCP user: --pcp-user with "
            "--pcp-password-file, or PGPOOL_PCP_USER/PGPOOL_PCP_PASSWORD"
        )
    if not common.pcp_users:  # --once: like an unreachable PCP, only a warning
        log.warning("run --once without a PCP user: no reload; pgpool reads the files at start")
    for warning in common.env_warnings:
        log.warning("%s", warning)
    preset = wiring.preset(run)
    if preset is not None and preset.tls and common.tls == "off":
        log.warning(
            "--tls off with --preset %s: %s clusters accept only TLS connections, so "
            "pgpool will not reach the backends",
            preset.name,
            preset.name,
        )
    registry = metrics.new_registry()
    m = Metrics(registry)
    change = ChangeSignal()
    build = wiring.builder(common, hba_text=wiring.read_hba(common))
    source: Source
    rollout_api: DeploymentApi | None = None
    if run.kube:
        kube_source = _kube_source(common, run, preset, m)
        source, rollout_api = kube_source, kube_source.deployments()
    else:
        source = wiring.dir_source(common, preset, watch=not run.once)
    events = AsyncEvents(source.post_event)
    actuator = wiring.actuator(common, run, rollout_api=rollout_api)
    loop = reconcile.Loop(
        snapshot=source.snapshot,
        build=build,
        actuator=actuator,
        reporter=Reporter(metrics=m, events=events),
        signal=change,
        where=str(common.config_dir),
        resync_seconds=run.resync_seconds,
    )
    try:
        source.start(change.notify)
    except SourceUnavailable as exc:
        source.stop()
        raise UsageError(str(exc)) from None
    try:
        if run.once:
            loop.step()
            if loop.pending_reload:
                log.info("pgpool not reachable for reload; it reads the files when it starts")
            return EXIT_OK if loop.ready.is_set() else EXIT_INPUT
        host, port = httpserve.parse_listen(run.listen)
        server = metrics.serve(
            registry=registry, healthy=source.healthy, ready=loop.is_ready, host=host, port=port
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
    finally:
        source.stop()
        events.close()
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
            status = cmd_render(settings.common, strict=settings.strict)
            if status == EXIT_OK and settings.then:
                exec_after_render(settings.then, environ)
            return status
        if settings.command == "exporter":
            assert settings.exporter is not None
            return exporter_command.run(settings.exporter)
        if settings.command == "run":
            assert settings.common is not None and settings.run is not None
            return cmd_run(settings.common, settings.run)
    except UsageError as exc:
        print(f"pgpoolsync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SecretsDirError as exc:
        print(
            f"pgpoolsync: error: {exc} (set by --secrets-dir / PGPOOLSYNC_SECRETS_DIR or "
            "--tls-dir / PGPOOLSYNC_TLS_DIR: is its volume mounted?)",
            file=sys.stderr,
        )
        return EXIT_INPUT
    except KeyFileError as exc:
        print(f"pgpoolsync: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    print(f"pgpoolsync: unknown command {settings.command}", file=sys.stderr)
    return EXIT_USAGE
