"""The local Airflow UI's default time zone: Asia/Shanghai, the zone of every schedule, service day and email.

Airflow 3's UI shows times in a zone it keeps per browser (local storage, key `timezone`), defaulting to the
browser's own zone; the server has no setting for it (Airflow 2's `default_ui_timezone` is gone). This plugin's
middleware adds to the UI's page a line that sets that key when the browser has none, so a first visit shows
Asia/Shanghai and a zone the engineer picks in the user menu is kept. `airflow_local.migrate` installs it.
"""

from __future__ import annotations

import json

from airflow.plugins_manager import AirflowPlugin

from warehouse.settings import SERVICE_TZ

STORAGE_KEY = "timezone"
_KEY, _ZONE = json.dumps(STORAGE_KEY), json.dumps(json.dumps(SERVICE_TZ))  # the UI stores values as JSON
DEFAULT_ZONE_SCRIPT = (
    f"<script>try{{if(!localStorage.getItem({_KEY}))localStorage.setItem({_KEY},{_ZONE})}}catch(e){{}}</script>"
).encode()


class DefaultUiTimezone:
    """ASGI middleware: every HTML page gets DEFAULT_ZONE_SCRIPT first thing in its <head>."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: dict = {}
        chunks: list[bytes] = []

        async def send_with_script(message) -> None:
            if message["type"] == "http.response.start":
                if dict(message.get("headers", [])).get(b"content-type", b"").startswith(b"text/html"):
                    held["start"] = message
                    return
            elif message["type"] == "http.response.body" and "start" in held:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = b"".join(chunks).replace(b"<head>", b"<head>" + DEFAULT_ZONE_SCRIPT, 1)
                start = held["start"]
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, send_with_script)


class GovUiPlugin(AirflowPlugin):
    name = "gov_ui_timezone"
    fastapi_root_middlewares = [{"middleware": DefaultUiTimezone, "args": [], "kwargs": {},
                                 "name": "Default UI time zone Asia/Shanghai"}]
