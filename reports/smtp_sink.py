"""A local SMTP sink (aiosmtpd) that writes every message it receives to an outbox as .eml files."""

from __future__ import annotations

import argparse
import re
import time
from datetime import datetime
from pathlib import Path

from aiosmtpd.controller import Controller


class OutboxHandler:
    def __init__(self, outbox: Path):
        self.outbox = outbox
        self.outbox.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
        rcpt = re.sub(r"[^A-Za-z0-9_.-]+", "_", ",".join(envelope.rcpt_tos))[:80]
        (self.outbox / f"{stamp}_{rcpt}.eml").write_bytes(envelope.content)
        return "250 Message accepted for delivery"


def start(outbox: Path, host: str = "127.0.0.1", port: int = 0) -> Controller:
    """Start the sink in a background thread; port 0 picks a free port (see controller.port)."""
    controller = Controller(OutboxHandler(outbox), hostname=host, port=port or _free_port(host))
    controller.start()
    return controller


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outbox", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args()
    controller = start(args.outbox, args.host, args.port)
    print(f"SMTP sink on {args.host}:{controller.port}, writing to {args.outbox}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
