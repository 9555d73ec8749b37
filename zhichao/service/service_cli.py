"""``zhichao serve | db upgrade | users add|disable|enable|set-password|end-sessions |
vehicles import | stats | audit verify|seal``.

The database comes from ``--db`` or ``ZHICHAO_DATABASE_URL`` (default
``sqlite:///zhichao-service.db``); PostgreSQL: ``postgresql+psycopg://user@host:5432/db``.
Passwords are read from ``ZHICHAO_PASSWORD`` or asked for (never a command-line argument).
"""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zhichao.service.errors import ServiceError


def register(subparsers: Any) -> None:
    def db_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", help="database URL (default: $ZHICHAO_DATABASE_URL or "
                                    "sqlite:///zhichao-service.db)")
        p.add_argument("--schema", help="PostgreSQL schema for the tables")

    serve = subparsers.add_parser("serve", help="serve the JSON API (and pages, if installed)")
    db_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--forwarded-allow-ips", metavar="IPS",
                       help="reverse proxies whose X-Forwarded-For is believed, comma-"
                            "separated addresses or networks (default "
                            "$ZHICHAO_FORWARDED_ALLOW_IPS, else none: the peer address "
                            "is the client, whatever the headers say)")
    serve.add_argument("--evidence-log", help="the center's Merkle log directory: review "
                                              "events are appended to it in the background "
                                              "(default $ZHICHAO_EVIDENCE_LOG; unset: off)")
    serve.add_argument("--evidence-key", help="Ed25519 private key signing its checkpoints "
                                              "($ZHICHAO_EVIDENCE_KEY)")
    serve.add_argument("--evidence-key-name", help="checkpoint key name "
                                                   "($ZHICHAO_EVIDENCE_KEY_NAME)")
    serve.add_argument("--evidence-log-origin", help="log origin, to create a new log "
                                                     "($ZHICHAO_EVIDENCE_LOG_ORIGIN)")
    serve.add_argument("--events-flush-interval-s", type=float,
                       help="seconds between background appends (default 5; 0: off, then "
                            "use 'zhichao events flush')")
    serve.add_argument("--redis-url", help="Redis for request limits shared by replicas "
                       "(default: $ZHICHAO_REDIS_URL; none: limits per process)")
    serve.add_argument("--holidays", action="append", metavar="FILE",
                       help="official holiday schedule (zhichao.holidays/1) of a year the "
                            "calendar package lacks; repeatable ($ZHICHAO_HOLIDAY_FILES)")
    serve.set_defaults(handler=_serve)

    db = subparsers.add_parser("db", help="service database tasks")
    db_sub = db.add_subparsers(dest="db_command", metavar="TASK", required=True)
    up = db_sub.add_parser("upgrade", help="run the shipped migrations up to the newest")
    db_args(up)
    up.set_defaults(handler=_db_upgrade)

    users = subparsers.add_parser("users", help="service accounts")
    users_sub = users.add_subparsers(dest="users_command", metavar="TASK", required=True)
    add = users_sub.add_parser("add", help="add an account (password from $ZHICHAO_PASSWORD "
                                           "or a prompt)")
    db_args(add)
    add.add_argument("username")
    add.add_argument("--role", action="append", required=True, dest="roles",
                     help="station_operator, technical_reviewer, legal_reviewer, "
                          "decision_maker, auditor, administrator (repeatable)")
    add.add_argument("--name", required=True, help="display name (zh-CN)")
    add.add_argument("--station", help="station id (station operators)")
    add.set_defaults(handler=_users_add)
    for task, help_text, handler in (
            ("disable", "disable an account (its sessions end at once)", _users_disable),
            ("enable", "enable an account again (earlier sessions stay ended)", _users_enable),
            ("set-password", "reset an account's password (password from "
                             "$ZHICHAO_PASSWORD or a prompt; its sessions end)",
             _users_set_password),
            ("end-sessions", "end every session of an account", _users_end_sessions)):
        task_parser = users_sub.add_parser(task, help=help_text)
        db_args(task_parser)
        task_parser.add_argument("username")
        task_parser.set_defaults(handler=handler)

    vehicles = subparsers.add_parser("vehicles", help="vehicle registration data")
    v_sub = vehicles.add_subparsers(dest="vehicles_command", metavar="TASK", required=True)
    imp = v_sub.add_parser("import", help="import a CSV: plate,plate_colour,vin,"
                                          "licence_file_number,owner_name_zh,owner_phone")
    db_args(imp)
    imp.add_argument("csv", type=Path)
    imp.set_defaults(handler=_vehicles_import)

    stats = subparsers.add_parser("stats", help="annual 行政执法 statistics")
    db_args(stats)
    stats.add_argument("--year", type=int, required=True)
    stats.add_argument("--format", choices=("json", "csv"), default="json")
    stats.set_defaults(handler=_stats)

    ev = subparsers.add_parser("events", help="review events for the evidence Merkle log")
    e_sub = ev.add_subparsers(dest="events_command", metavar="TASK", required=True)
    flush = e_sub.add_parser("flush", help="append pending review events to a Merkle log "
                                           "(signs a checkpoint per event)")
    db_args(flush)
    flush.add_argument("--log", type=Path, required=True, help="the (center's) log directory")
    flush.add_argument("--key", type=Path, required=True, help="the log's Ed25519 private key")
    flush.add_argument("--key-name", required=True, help="checkpoint key name")
    flush.add_argument("--origin", help="log origin, to create a new log")
    flush.set_defaults(handler=_events_flush)

    ret = subparsers.add_parser("retention", help="personal data retention (个人信息保护法 "
                                                  "Art. 19); run it daily, e.g. from cron")
    r_sub = ret.add_subparsers(dest="retention_command", metavar="TASK", required=True)
    run = r_sub.add_parser("run", help="remove the plates of non-case passages older than "
                                       "--days (default 30, unconfirmed)")
    db_args(run)
    run.add_argument("--days", type=int, default=30, help="retention period in days")
    run.add_argument("--drop-months-after-days", type=int, default=None, metavar="DAYS",
                     help="PostgreSQL: also drop whole months of passages older than DAYS "
                          "that hold no case (default: keep the rows for statistics)")
    run.set_defaults(handler=_retention_run)

    aud = subparsers.add_parser("audit", help="service audit log")
    a_sub = aud.add_subparsers(dest="audit_command", metavar="TASK", required=True)
    ver = a_sub.add_parser("verify", help="recompute the audit log's hash chain and check "
                                          "the owner access log against its seals")
    ver.add_argument("--seal", action="store_true",
                     help="seal the owner access log's committed rows first")
    db_args(ver)
    ver.set_defaults(handler=_audit_verify)
    seal = a_sub.add_parser("seal", help="seal the owner access log's committed, unsealed "
                                         "rows into one audit-chain entry")
    db_args(seal)
    seal.set_defaults(handler=_audit_seal)


def _url(args: argparse.Namespace) -> str:
    return str(args.db or os.environ.get("ZHICHAO_DATABASE_URL")
               or "sqlite:///zhichao-service.db")


def _factory(args: argparse.Namespace) -> Any:
    from zhichao.service.db import make_engine, session_factory, upgrade

    engine = make_engine(_url(args), schema=args.schema)
    upgrade(engine)
    return session_factory(engine)


def _fail(exc: ServiceError) -> int:
    print(f"错误：{exc.message_zh}（{exc.message}）", file=sys.stderr)
    return 1


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from zhichao.service.settings import (
        Settings,
        parse_forwarded_allow_ips,
        uvicorn_proxy_options,
    )

    try:
        proxies = None if args.forwarded_allow_ips is None else parse_forwarded_allow_ips(
            args.forwarded_allow_ips)
        settings = Settings.from_env(
            forwarded_allow_ips=proxies,
            database_url=_url(args), database_schema=args.schema,
            evidence_log_dir=args.evidence_log, evidence_log_key_path=args.evidence_key,
            evidence_log_key_name=args.evidence_key_name,
            evidence_log_origin=args.evidence_log_origin,
            events_flush_interval_s=args.events_flush_interval_s,
            holiday_files=args.holidays, redis_url=args.redis_url)
        app: Any
        try:  # the web console and owner pages wrap the API when they are installed
            from zhichao.service.web.console import create_console_app
        except ImportError:
            from zhichao.service.app import create_app
            app = create_app(settings)
        else:
            app = create_console_app(settings)
    except ServiceError as exc:
        return _fail(exc)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info",
                **uvicorn_proxy_options(settings.forwarded_allow_ips))
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from zhichao.service.db import make_engine, upgrade

    try:
        upgrade(make_engine(_url(args), schema=args.schema))
    except ServiceError as exc:
        return _fail(exc)
    print("数据库已升级到最新版本")
    return 0


def _users_add(args: argparse.Namespace) -> int:
    from zhichao.service import accounts
    from zhichao.service.db import transaction

    password = os.environ.get("ZHICHAO_PASSWORD") or getpass.getpass("密码：")
    try:
        with transaction(_factory(args)) as session:
            user = accounts.create_user(session, username=args.username, password=password,
                                        display_name_zh=args.name, roles=args.roles,
                                        station_id=args.station, actor="cli")
            print(f"已添加用户 {user.username}（编号 {user.id}）")
    except ServiceError as exc:
        return _fail(exc)
    return 0


def _users_task(args: argparse.Namespace, task: Callable[[Any, Any], str]) -> int:
    """Run ``task(session, user)`` on the account named ``args.username``; print its
    zh-CN outcome (audited with the actor ``cli``)."""
    from zhichao.service import accounts
    from zhichao.service.db import transaction

    try:
        with transaction(_factory(args)) as session:
            user = accounts.user_by_name(session, args.username)
            print(task(session, user))
    except ServiceError as exc:
        return _fail(exc)
    return 0


def _users_disable(args: argparse.Namespace) -> int:
    from zhichao.service import accounts

    return _users_task(args, lambda s, u: f"已停用用户 {u.username}，结束登录 "
                       f"{accounts.set_active(s, u, active=False, by=None)} 个")


def _users_enable(args: argparse.Namespace) -> int:
    from zhichao.service import accounts

    def enable(session: Any, user: Any) -> str:
        accounts.set_active(session, user, active=True, by=None)
        return f"已启用用户 {user.username}（停用前的登录不会恢复）"

    return _users_task(args, enable)


def _users_set_password(args: argparse.Namespace) -> int:
    from zhichao.service import accounts

    password = os.environ.get("ZHICHAO_PASSWORD") or getpass.getpass("新密码：")
    return _users_task(args, lambda s, u: f"已重置用户 {u.username} 的密码，结束登录 "
                       f"{accounts.set_password(s, u, password=password, by=None)} 个")


def _users_end_sessions(args: argparse.Namespace) -> int:
    from zhichao.service import accounts

    return _users_task(args, lambda s, u: f"已结束用户 {u.username} 的登录 "
                       f"{accounts.end_sessions(s, u, by=None)} 个")


def _vehicles_import(args: argparse.Namespace) -> int:
    from zhichao.service import ingest
    from zhichao.service.db import transaction
    from zhichao.service.errors import InvalidInputError

    try:
        with args.csv.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        print(f"错误：无法读取 {args.csv}（{exc}）", file=sys.stderr)
        return 1
    try:
        with transaction(_factory(args)) as session:
            for line, row in enumerate(rows, start=2):
                try:
                    ingest.upsert_vehicle(
                        session, plate=row.get("plate") or "",
                        plate_colour=row.get("plate_colour") or "", vin=row.get("vin") or "",
                        licence_file_number=row.get("licence_file_number") or None,
                        owner_name_zh=row.get("owner_name_zh") or None,
                        owner_phone=row.get("owner_phone") or None)
                except InvalidInputError as exc:
                    raise InvalidInputError(f"{args.csv}:{line}: {exc.message}",
                                            f"{args.csv} 第 {line} 行：{exc.message_zh}") from exc
    except ServiceError as exc:
        return _fail(exc)
    print(f"已导入 {len(rows)} 辆车的登记信息")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from zhichao.service import stats
    from zhichao.service.db import transaction

    try:
        with transaction(_factory(args)) as session:
            figures = stats.annual_statistics(session, args.year)
    except ServiceError as exc:
        return _fail(exc)
    if args.format == "csv":
        sys.stdout.write(stats.statistics_csv(figures))
    else:
        print(json.dumps(figures, ensure_ascii=False, indent=2))
    return 0


def _retention_run(args: argparse.Namespace) -> int:
    from zhichao.service import retention
    from zhichao.service.db import transaction

    try:
        with transaction(_factory(args)) as session:
            count = retention.remove_expired_plates(
                session, retention_days=args.days, actor="cli:retention",
                row_retention_days=args.drop_months_after_days)
    except ServiceError as exc:
        return _fail(exc)
    print(f"已删除 {count} 条非案件过车记录的号牌（保存期限 {args.days} 天）")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from zhichao.service import access_log
    from zhichao.service.db import transaction

    try:
        factory = _factory(args)
        if args.seal:
            access_log.seal_pending(factory)
        with transaction(factory) as session:
            check = access_log.verify_all(session)
    except ServiceError as exc:
        return _fail(exc)
    for p in check.problems:
        where = "条目" if p.table == "audit_log" else "车主查询记录"
        print(f"{where} {p.entry_id}：{p.problem}")
    print(f"车主查询记录 {check.access.entries} 条，已封存批次 {check.access.seals} 个，"
          f"尚未封存 {check.access.unsealed} 条")
    print("审计日志链完整" if not check.problems
          else f"审计日志链校验失败：{len(check.problems)} 处")
    return 0 if not check.problems else 1


def _audit_seal(args: argparse.Namespace) -> int:
    from zhichao.service import access_log

    try:
        seal = access_log.seal_pending(_factory(args))
    except ServiceError as exc:
        return _fail(exc)
    if seal is None:
        print("没有待封存的车主查询记录")
    else:
        print(f"已封存车主查询记录 {seal.first_id}–{seal.last_id}（{seal.count} 条），"
              f"审计日志条目 {seal.audit_entry_id}")
    return 0


def _events_flush(args: argparse.Namespace) -> int:
    from zhichao.errors import ZhichaoError
    from zhichao.evidence.merkle import MerkleLog
    from zhichao.evidence.package import Station
    from zhichao.evidence.signing import load_private_key
    from zhichao.service import events

    try:
        factory = _factory(args)
        key = load_private_key(args.key)
        create = args.origin is not None and not args.log.exists()
        with MerkleLog(args.log, origin=args.origin, create=create) as log:
            count = events.flush_to_log(factory, log, Station("center", args.key_name, key))
    except ServiceError as exc:
        return _fail(exc)
    except ZhichaoError as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 1
    print(f"已写入 {count} 条审核事件")
    return 0
