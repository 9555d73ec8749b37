"""``zhichao center …``: the enforcement center's ingest server (the receiving end of the
station → center sync, docs/sync.md).

    zhichao center serve --db URL --store DIR --key center.key [--host H --port P]
                         [--no-service-hook | --service-db URL [--service-schema S]]
                         [--object-store s3://BUCKET/PREFIX [--s3-endpoint-url URL]]

Replicas: any number of ``center serve`` processes may run on one PostgreSQL database
(each on its own port, behind a load balancer); with ``--object-store`` they share the
packages too, so they may run on different machines (docs/service.md, "Replicas").
    zhichao center add-station --db URL --station S001 --key S001.pub

Exit codes: 0 success, 1 something was refused or is left over, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from zhichao.errors import ZhichaoError


def register(subparsers: Any) -> None:
    center = subparsers.add_parser("center", help="enforcement-center side of the sync",
                                   description="中心端：接收站点上传的证据包与通行记录")
    csub = center.add_subparsers(dest="center_command", metavar="ACTION")
    serve = csub.add_parser("serve", help="run the ingest HTTP server")
    _db_args(serve)
    serve.add_argument("--store", required=True, help="directory for packages and quarantine")
    serve.add_argument("--key", required=True, help="center Ed25519 private key (PEM)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8700)
    serve.add_argument("--max-package-mb", type=float, default=64.0)
    serve.add_argument("--forwarded-allow-ips", metavar="IPS",
                       help="reverse proxies whose X-Forwarded-For is believed, comma-"
                            "separated addresses or networks (default: none)")
    serve.add_argument("--no-service-hook", action="store_true",
                       help="only store and receipt what stations send; by default every "
                            "accepted package and passage is also registered in the service "
                            "database (cases in technical review), the one given by --db and "
                            "--schema unless --service-db is set")
    serve.add_argument("--object-store", metavar="S3_URI",
                       help="keep accepted packages in this S3-compatible bucket and key "
                            "prefix (s3://bucket/prefix/; credentials from the AWS_* "
                            "environment or boto3's config) instead of STORE/packages")
    serve.add_argument("--s3-endpoint-url", metavar="URL",
                       help="endpoint of the S3-compatible store (default: "
                            "$ZHICHAO_S3_ENDPOINT_URL, else AWS)")
    serve.add_argument("--service-db", help="service database URL for the hook (default: "
                                            "--db); migrated at start")
    serve.add_argument("--service-schema", help="PostgreSQL schema of --service-db "
                                                "(default: --schema when --service-db is "
                                                "not set)")
    serve.set_defaults(handler=_center_serve)
    add = csub.add_parser("add-station", help="trust a station's public key")
    _db_args(add)
    add.add_argument("--station", required=True)
    add.add_argument("--key", required=True, help="station public key (PEM)")
    add.add_argument("--key-name", help="default zhichao-station-<id>")
    add.add_argument("--replace-key", action="store_true")
    add.add_argument("--previous-key-valid-below", type=int, metavar="LOG_SIZE",
                     help="with --replace-key: the station's log size when it changed keys; "
                          "the replaced key stays trusted for entries below it (default: the "
                          "size the center has accepted)")
    add.set_defaults(handler=_center_add_station)
    center.set_defaults(handler=lambda _args: (center.print_help(), 2)[1])


def _db_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True,
                        help="SQLAlchemy URL: sqlite:///center.sqlite or "
                             "postgresql+psycopg://user@host:5432/db")
    parser.add_argument("--schema", help="PostgreSQL schema for the center's tables (the sync "
                                         "tables and the service tables the hook fills)")


def _error(exc: BaseException) -> int:
    print(f"错误 error: {exc}", file=sys.stderr)
    return 2


def _center_serve(args: argparse.Namespace) -> int:
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from zhichao.evidence.signing import load_private_key
    from zhichao.service.body_limit import CENTER_DEFAULT_MAX_BYTES, BodyLimit, center_limits
    from zhichao.service.center.server import create_center_app
    from zhichao.service.settings import parse_forwarded_allow_ips, uvicorn_proxy_options

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    max_package_bytes = int(args.max_package_mb * 1024 * 1024)
    try:
        proxies = parse_forwarded_allow_ips(args.forwarded_allow_ips or "")
        key = load_private_key(Path(args.key))
        hook = None if args.no_service_hook else _service_hook(args)
        files = None
        if args.object_store:
            from zhichao.service.objectstore import S3Packages

            files = S3Packages.from_uri(args.object_store, endpoint_url=args.s3_endpoint_url,
                                        cache_dir=Path(args.store) / "object-cache")
        app = create_center_app(args.db, Path(args.store), key, schema=args.schema,
                                max_package_bytes=max_package_bytes, hook=hook, files=files)
    except (ZhichaoError, OSError, SQLAlchemyError) as exc:
        return _error(exc)
    guarded = BodyLimit(app, default_bytes=CENTER_DEFAULT_MAX_BYTES,
                        routes=center_limits(max_package_bytes))
    uvicorn.run(guarded, host=args.host, port=args.port, log_level="warning",
                **uvicorn_proxy_options(proxies))
    return 0


def _service_hook(args: argparse.Namespace) -> Any:
    """The accept hook on the service database (migrated here, before the first item)."""
    from zhichao.service.center.service_hook import ServiceHook
    from zhichao.service.db import make_engine, upgrade

    if args.service_db:
        url, schema = args.service_db, args.service_schema
    else:
        url, schema = args.db, args.service_schema or args.schema
    engine = make_engine(url, schema=schema)
    upgrade(engine)
    print(f"中心接收后登记到业务库 / accepted items are registered in the service database "
          f"{engine.url.render_as_string(hide_password=True)}"
          f"{f' (schema {schema})' if schema else ''}", file=sys.stderr)
    return ServiceHook.for_engine(engine)


def _center_add_station(args: argparse.Namespace) -> int:
    from zhichao.service.center.store import create_tables, make_engine, register_station

    try:
        pem = Path(args.key).read_bytes()
        engine = make_engine(args.db)
        create_tables(engine, args.schema)
        register_station(engine, args.station, pem, schema=args.schema,
                         key_name=args.key_name, replace_key=args.replace_key,
                         previous_key_valid_below=args.previous_key_valid_below)
    except (ZhichaoError, OSError) as exc:
        return _error(exc)
    print(f"站点 {args.station} 已登记 / station {args.station} registered")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m zhichao.service.center_cli center …``: the same commands without
    loading the other stages (a lighter process for a center or an uploader)."""
    from zhichao.cli import run

    parser = argparse.ArgumentParser(prog="python -m zhichao.service.center_cli")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
