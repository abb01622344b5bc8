"""A minimal headless-Chromium driver for the report's browser test: the DevTools protocol over
``--remote-debugging-pipe`` (JSON messages ending in NUL on file descriptors 3 and 4), so no
Python dependency beyond the standard library is needed."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The path of an installed Chromium (or Chrome), or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageLoad:
    """What loading a page showed: console errors and exceptions, requests to anything but
    file: and data: URLs, and the results of the evaluated expressions."""

    errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


class Chromium:
    """A headless Chromium process driven over the DevTools pipe. Use as a context manager."""

    def __init__(self, executable: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="reluscope-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        args = [
            executable,
            "--headless=new",
            "--remote-debugging-pipe",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--hide-scrollbars",
            f"--user-data-dir={self._profile}",
            "about:blank",
        ]

        def wire() -> None:  # the browser reads commands on fd 3 and writes on fd 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self._process = subprocess.Popen(
            args,
            preexec_fn=wire,
            pass_fds=(3, 4),  # kept open after wire() put the pipes there
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.kill()
        self._process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events meanwhile are kept)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def _wait_for(self, event: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        seen = 0
        while True:
            for e in self._events[seen:]:
                if e.get("method") == event and e.get("sessionId") == session:
                    return
            seen = len(self._events)
            self._events.append(self._read_message(deadline))

    def load(
        self,
        url: str,
        width: int,
        height: int,
        expressions: dict[str, str],
        screenshot: Path | None = None,
    ) -> PageLoad:
        """Open ``url`` in a fresh tab ``width`` x ``height`` CSS px wide (a phone below 600),
        wait for it to load, evaluate ``expressions`` (JavaScript, JSON-serialisable results)
        and write a full-page PNG ``screenshot``."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=width < 600,
        )
        first = len(self._events)
        self.send("Page.navigate", session, url=url)
        self._wait_for("Page.loadEventFired", session)
        self.send("Runtime.evaluate", session, expression="document.fonts.ready", awaitPromise=True)
        result = PageLoad()
        for name, expression in expressions.items():
            answer = self.send(
                "Runtime.evaluate",
                session,
                expression=expression,
                returnByValue=True,
                awaitPromise=True,
            )
            if "exceptionDetails" in answer:
                raise RuntimeError(f"{name}: {answer['exceptionDetails']}")
            result.values[name] = answer["result"].get("value")
        if screenshot is not None:
            shot = self.send(
                "Page.captureScreenshot", session, format="png", captureBeyondViewport=True
            )
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        for event in self._events[first:]:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                result.errors.append(json.dumps(params.get("args")))
            elif method == "Runtime.exceptionThrown":
                result.errors.append(json.dumps(params.get("exceptionDetails")))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                result.errors.append(params["entry"].get("text", ""))
            elif method == "Network.requestWillBeSent":
                request_url = params["request"]["url"]
                if not request_url.startswith(("file:", "data:", "about:")):
                    result.external_requests.append(request_url)
        self.send("Target.closeTarget", targetId=target)
        return result
