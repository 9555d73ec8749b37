"""``zhichao sync …``: the station's side of the station → center sync (docs/sync.md).

    zhichao sync enqueue --outbox OUTBOX.sqlite [PACKAGE_DIR…] [--scan PACKAGES_DIR]
                         [--passages FILE.jsonl --station S001 --key station.key]
    zhichao sync push --outbox OUTBOX.sqlite --center URL --center-key center.pub
                      --log STATION_LOG [--until-empty] [--max-runtime-s N]
    zhichao sync status --outbox OUTBOX.sqlite

Exit codes: 0 success, 1 something was refused or is left over, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from zhichao.errors import ZhichaoError


def register(subparsers: Any) -> None:
    sync = subparsers.add_parser("sync", help="station side of the sync (outbox, upload)",
                                 description="站点端：待上传队列与上传")
    ssub = sync.add_subparsers(dest="sync_command", metavar="ACTION")
    enq = ssub.add_parser("enqueue", help="put sealed packages / passage records in the outbox")
    enq.add_argument("--outbox", required=True)
    enq.add_argument("packages", nargs="*", help="sealed package folders")
    enq.add_argument("--scan", help="enqueue every sealed package folder in this directory")
    enq.add_argument("--passages", help="JSON-lines file of passage records")
    enq.add_argument("--station", help="station id (for --passages)")
    enq.add_argument("--key", help="station private key (for --passages)")
    enq.set_defaults(handler=_sync_enqueue)
    push = ssub.add_parser("push", help="upload the outbox to the center")
    push.add_argument("--outbox", required=True)
    push.add_argument("--center", required=True, help="center base URL, e.g. http://host:8700")
    push.add_argument("--center-key", required=True, help="center public key (PEM)")
    push.add_argument("--log", help="station Merkle log directory (for consistency proofs)")
    push.add_argument("--until-empty", action="store_true", help="stop when nothing is left")
    push.add_argument("--max-runtime-s", type=float)
    push.add_argument("--base-delay-s", type=float, default=0.5)
    push.add_argument("--max-delay-s", type=float, default=60.0)
    push.add_argument("--poll-s", type=float, default=1.0)
    push.add_argument("--timeout-s", type=float, default=30.0)
    push.set_defaults(handler=_sync_push)
    status = ssub.add_parser("status", help="outbox depth and refusals (JSON)")
    status.add_argument("--outbox", required=True)
    status.set_defaults(handler=_sync_status)
    sync.set_defaults(handler=lambda _args: (sync.print_help(), 2)[1])


def _error(exc: BaseException) -> int:
    print(f"错误 error: {exc}", file=sys.stderr)
    return 2


def _sync_enqueue(args: argparse.Namespace) -> int:
    from zhichao.evidence.signing import load_private_key
    from zhichao.station.sync_outbox import Outbox

    added = present = 0
    try:
        with Outbox(Path(args.outbox)) as outbox:
            for folder in args.packages:
                _, new = outbox.enqueue_package(Path(folder))
                added, present = added + new, present + (not new)
            if args.scan:
                new_count, old_count = outbox.enqueue_tree(Path(args.scan))
                added, present = added + new_count, present + old_count
            if args.passages:
                if not args.station or not args.key:
                    raise ValueError("--passages needs --station and --key")
                key = load_private_key(Path(args.key))
                path = Path(args.passages)
                for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{n}: not JSON ({exc})") from None
                    _, new = outbox.enqueue_passage(record, args.station, key)
                    added, present = added + new, present + (not new)
            depth = outbox.depth()
    except (ZhichaoError, OSError, ValueError) as exc:
        return _error(exc)
    print(json.dumps({"added": added, "already_present": present, "depth": depth}))
    return 0


def _sync_push(args: argparse.Namespace) -> int:
    from zhichao.common import Backoff
    from zhichao.evidence.signing import load_public_key
    from zhichao.station.sync_outbox import Outbox
    from zhichao.station.uploader import Uploader

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        center_key = load_public_key(Path(args.center_key))
        outbox = Outbox(Path(args.outbox))
    except (ZhichaoError, OSError) as exc:
        return _error(exc)
    uploader = Uploader(outbox, args.center, center_key,
                        log_dir=Path(args.log) if args.log else None,
                        backoff=Backoff(args.base_delay_s, args.max_delay_s),
                        timeout_s=args.timeout_s)
    try:
        summary = uploader.run(until_empty=args.until_empty, max_runtime_s=args.max_runtime_s,
                               poll_s=args.poll_s)
    finally:
        uploader.close()
    result = {**summary.as_dict(), "depth": outbox.depth()}
    outbox.close()
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result["refused"] == 0 and (result["depth"] == 0 or not args.until_empty) else 1


def _sync_status(args: argparse.Namespace) -> int:
    from zhichao.station.sync_outbox import Outbox

    try:
        with Outbox(Path(args.outbox)) as outbox:
            status = outbox.status()
    except (ZhichaoError, OSError) as exc:
        return _error(exc)
    print(json.dumps(status, ensure_ascii=False, indent=1))
    return 1 if status["refused"] else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m zhichao.station.sync_cli sync …``: the same commands without
    loading the other stages (a lighter process for a center or an uploader)."""
    from zhichao.cli import run

    parser = argparse.ArgumentParser(prog="python -m zhichao.station.sync_cli")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
