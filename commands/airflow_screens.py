"""Screenshots of the local Airflow UI for the README (`make screenshots`, after `make demo`).

    python -m commands.airflow_screens [--day 2023-11-07] [--out docs/screenshots]

Runs the watchdog for the day after the demo's night (not published, so its check fails: the log worth
showing), starts `gov-warehouse airflow` (what `make airflow` runs) on a free port, logs in as the printed
admin and drives headless Chromium over the DevTools protocol: the DAG list, gov_publish's grid with the
dbt task group open, the failed check's log, the `marts` asset. The browser's zone is left to the UI's
default (orchestration/airflow_ui.py), so the pictures show what a first visit shows. File paths on
the pages (a traceback's) are shown relative to the checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

from orchestration import airflow_local
from reports.render_check import CHROMIUM_FLAGS, _fontconfig, chromium
from warehouse import connections, settings

WIDTH, HEIGHT = 1440, 900


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, data: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    body = json.dumps(data).encode() if data is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=10) as r:
        return json.loads(r.read())


def fail_the_watchdog(day: date) -> None:
    """The watchdog's check for `day` (never loaded), so the UI has a failed check with its reason."""
    from reports import smtp_sink
    from warehouse.bootstrap import bootstrap

    bootstrap(connections.warehouse())
    sink = smtp_sink.start(settings.outbox_dir())
    try:
        env = airflow_local.airflow_env(sink.port)
        airflow_local.migrate(env)
        log = settings.local_dir() / "logs" / f"watchdog-{day}.log"
        rc = airflow_local.dags_test("gov_publish_watchdog", day, env, log)
        if rc == 0:
            raise SystemExit(f"the watchdog passed for {day}: is that day published? (see {log})")
    finally:
        sink.stop()


@contextmanager
def running_airflow(log: Path):
    """`gov-warehouse airflow` on a free port; yields (base URL, admin token)."""
    port = _free_port()
    env = {**os.environ, "AIRFLOW__API__PORT": str(port)}
    proc = subprocess.Popen([str(Path(airflow_local.airflow_bin()).with_name("python")), "-m", "commands", "airflow"],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"gov-warehouse airflow ended: see {log}")
            try:
                _http(f"{base}/api/v2/version")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the api-server did not come up: see {log}") from None
                time.sleep(2)
        password = json.loads((settings.airflow_home() / "simple_auth_manager_passwords.json.generated")
                              .read_text())["admin"]
        yield base, _http(f"{base}/auth/token", {"username": "admin", "password": password})["access_token"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


class Page:
    """One Chromium tab over the DevTools protocol (only the few commands the screenshots need)."""

    def __init__(self, ws) -> None:
        self.ws, self.next_id = ws, 0

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def shoot(self, url: str, out: Path, settle_s: float = 8.0) -> Path:
        await self.call("Page.navigate", url=url)
        await asyncio.sleep(settle_s)  # the UI is a JS app: its data arrives after the load event
        # file paths in logs and tracebacks are shown relative to the checkout, as they read on any machine
        root = json.dumps(f"{settings.REPO_ROOT}/")
        await self.call("Runtime.evaluate", expression=(
            "(() => { const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT); let n;"
            f" while ((n = w.nextNode())) if (n.nodeValue.includes({root}))"
            f" n.nodeValue = n.nodeValue.split({root}).join(''); }})()"))
        shot = await self.call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(shot["data"]))
        print(out)
        return out


@contextmanager
def chromium_devtools(workdir: Path):
    """Headless Chromium with a DevTools port; yields the websocket URL of its one tab."""
    profile = workdir / "profile"
    env = {"FONTCONFIG_FILE": str(_fontconfig(workdir)), "HOME": str(workdir), "PATH": "/usr/bin:/bin",
           "TZ": "UTC"}  # the browser's own zone is not Asia/Shanghai: the UI's default has to make it so
    proc = subprocess.Popen([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("Chromium did not open its DevTools port")
            time.sleep(0.5)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            tab = next(t for t in json.loads(r.read()) if t["type"] == "page")
        yield tab["webSocketDebuggerUrl"]
    finally:
        proc.terminate()
        proc.wait(30)


async def shoot_all(ws_url: str, base: str, token: str, day: date, out: Path) -> list[Path]:
    from websockets.asyncio.client import connect

    marts = _http(f"{base}/api/v2/assets?name_pattern=marts", token=token)["assets"]
    marts_id = next(a["id"] for a in marts if a["name"] == "marts")
    async with connect(ws_url, max_size=None) as ws:
        page = Page(ws)
        await page.call("Page.enable")
        await page.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                        mobile=False)
        await page.call("Network.enable")
        await page.call("Network.setCookie", name="_token", value=token, url=base)
        await page.call("Page.navigate", url=f"{base}/api/v2/version")
        await asyncio.sleep(1)
        # the grid keeps which task groups are open per DAG in local storage: open `dbt`
        await page.call("Runtime.evaluate", expression="localStorage.setItem('gov_publish/open-groups', "
                                                       "JSON.stringify(['dbt']))")
        return [
            await page.shoot(f"{base}/dags", out / "dag-list.png"),
            await page.shoot(f"{base}/dags/gov_publish/runs/local__{day}", out / "gov-publish-grid.png"),
            await page.shoot(f"{base}/dags/gov_publish_watchdog/runs/local__{day + timedelta(days=1)}/tasks/"
                             "check_published", out / "failed-check-log.png"),
            await page.shoot(f"{base}/assets/{marts_id}", out / "marts-asset.png"),
        ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m commands.airflow_screens", description=__doc__.split("\n")[0])
    parser.add_argument("--day", default="2023-11-07", help="the demo's service day (make demo DAY=…)")
    parser.add_argument("--out", default=str(settings.REPO_ROOT / "docs" / "screenshots"))
    args = parser.parse_args(argv)
    day, out = date.fromisoformat(args.day), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fail_the_watchdog(day + timedelta(days=1))
    with tempfile.TemporaryDirectory() as tmp, running_airflow(settings.local_dir() / "logs" / "screens-airflow.log") \
            as (base, token), chromium_devtools(Path(tmp)) as ws_url:
        asyncio.run(shoot_all(ws_url, base, token, day, out))


if __name__ == "__main__":
    main()
