"""Open a report in a real headless browser: do its figures load, are its Findings shown?

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: the
browser reads commands on its fd 3 and writes answers on its fd 4, each a JSON message ended
by a NUL byte), so neither a pip package nor a network port is needed. Every wait has a
deadline: a hung or crashed browser is a one-line :class:`CondPretrainError`, never a hung
caller. The browser gets a throwaway profile and its own process group, both removed after.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from condpretrain import atomic
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger

log = get_logger(__name__)

BROWSER_ENV = "CONDPRETRAIN_BROWSER"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")
# Taller than this, a capture may exceed the compositor's texture size; such pages are cut.
MAX_CAPTURE_HEIGHT = 16384
_CLOSE_GRACE_S = 5.0


@dataclass(frozen=True)
class ReportView:
    """What a reader of the page sees, as the browser rendered it."""

    images: int  # <img> elements on the page
    failed_images: list[str]  # "alt (src prefix)" of each image that did not load
    findings_present: bool  # an element with id="findings" exists
    findings_visible: bool  # ... with a non-empty box, not display:none / visibility:hidden
    findings_text: str  # its innerText ("" when absent or hidden)


def find_browser() -> str:
    """The Chromium-family executable to use: $CONDPRETRAIN_BROWSER, else the first on PATH."""
    chosen = os.environ.get(BROWSER_ENV)
    for found in map(shutil.which, [chosen] if chosen else BROWSER_NAMES):
        if found:
            return found
    if chosen:
        raise CondPretrainError(f"{BROWSER_ENV}={chosen}: not an executable browser")
    raise CondPretrainError(
        f"no browser to open the report: install Debian's chromium (apt-get install chromium) "
        f"or set {BROWSER_ENV} to a Chromium or Chrome executable")


# Waits for images still loading (bounded, so a lazy image cannot hang it), then reads the page.
_INSPECT_JS = """(async (waitMs) => {
  const images = [...document.images];
  const settled = images.map(i => i.complete ? null : new Promise(done => {
    i.addEventListener('load', done); i.addEventListener('error', done); }));
  await Promise.race([Promise.all(settled), new Promise(done => setTimeout(done, waitMs))]);
  const failed = images.filter(i => !(i.complete && i.naturalWidth > 0))
    .map(i => `${i.alt || '(no alt)'} (${(i.getAttribute('src') || '').slice(0, 40)})`);
  const f = document.getElementById('findings'), box = f && f.getBoundingClientRect();
  const style = f && getComputedStyle(f);  // checkVisibility also sees hidden ancestors
  const visible = !!f && box.width > 0 && box.height > 0 && style.display !== 'none'
    && style.visibility !== 'hidden' && f.checkVisibility({visibilityProperty: true});
  return {images: images.length, failed: failed, present: !!f, visible: visible,
          text: f && visible ? f.innerText.trim() : ''};
})"""


def inspect_report(html_path: str | Path, width: int = 1280, timeout: float = 60) -> ReportView:
    """Load ``html_path`` in headless Chromium and report its images and Findings element."""
    with _Browser(html_path, timeout) as browser:
        session = browser.open_page(width, 900)
        wait_ms = max(int(browser.remaining() * 500), 1)  # half of what is left
        page = browser.evaluate(session, f"{_INSPECT_JS}({wait_ms})")
    return ReportView(int(page["images"]), [str(s) for s in page["failed"]],
                      bool(page["present"]), bool(page["visible"]), str(page["text"]))


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1280,
               height: int = 900, full_page: bool = False, timeout: float = 60) -> Path:
    """Write a PNG of ``html_path`` as a ``width`` x ``height`` window shows it (the whole
    page when ``full_page``, up to :data:`MAX_CAPTURE_HEIGHT` pixels)."""
    with _Browser(html_path, timeout) as browser:
        session = browser.open_page(width, height)
        if full_page:
            metrics = browser.call("Page.getLayoutMetrics", {}, session)
            page_height = int(metrics["cssContentSize"]["height"] + 0.5)
            if page_height > MAX_CAPTURE_HEIGHT:
                log.warning("%s is %d px tall; the screenshot keeps the top %d px",
                            html_path, page_height, MAX_CAPTURE_HEIGHT)
            height = max(1, min(page_height, MAX_CAPTURE_HEIGHT))
            browser.resize(session, width, height)
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session)
    atomic.write_bytes(png_path, base64.b64decode(shot["data"]))
    return Path(png_path)


class _Browser:
    """One headless Chromium on a DevTools pipe, with one deadline for everything."""

    def __init__(self, page: str | Path, timeout: float) -> None:
        if not Path(page).is_file():
            raise CondPretrainError(f"{page}: no such report file")
        self.page, self.timeout = Path(page).resolve(), timeout
        self.deadline = time.monotonic() + timeout
        self.executable = find_browser()
        self._next_id = 0
        self._buffer = b""
        self._unclaimed: list[dict[str, Any]] = []  # messages no wait has claimed yet

    def __enter__(self) -> _Browser:
        self._profile = tempfile.TemporaryDirectory(prefix="condpretrain-browser-",
                                                    ignore_cleanup_errors=True)
        self._stderr = open(Path(self._profile.name) / "stderr.txt", "w+b")  # noqa: SIM115
        args = [self.executable, "--headless", "--remote-debugging-pipe",
                f"--user-data-dir={self._profile.name}", "--no-first-run",
                "--no-default-browser-check", "--disable-gpu", "--disable-extensions",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "about:blank"]
        if os.geteuid() == 0:
            args.insert(2, "--no-sandbox")  # Chromium refuses to run sandboxed as root
        commands_r, self._commands = os.pipe()  # the browser reads our commands on its fd 3
        self._answers, answers_w = os.pipe()  # and writes its answers on its fd 4
        # Copies numbered 10 or above, so the child's dup2 onto 3 and 4 cannot clobber them.
        child_in, child_out = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
                               for fd in (commands_r, answers_w))
        try:
            self._process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                close_fds=False, start_new_session=True,  # its own group: all ended together
                preexec_fn=lambda: (os.dup2(child_in, 3), os.dup2(child_out, 4)))
        except OSError as exc:
            self._close_files()
            raise CondPretrainError(f"{self.executable}: cannot start ({exc.strerror})") from None
        finally:
            for fd in (commands_r, answers_w, child_in, child_out):
                os.close(fd)
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc_info: object) -> None:
        if kind is None:  # a browser that answered gets to close cleanly; others do not
            with contextlib.suppress(CondPretrainError, OSError):
                self._send("Browser.close", {}, None)
            _exit_status(self._process.pid, _CLOSE_GRACE_S)
        # Renderers and helpers share the browser's process group. It is not reaped yet,
        # so its group id cannot have passed to anyone else.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        self._close_files()

    def _close_files(self) -> None:
        for fd in (self._commands, self._answers):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._stderr.close()
        self._profile.cleanup()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def open_page(self, width: int, height: int) -> str:
        """A new tab showing the page in a window of that size, loaded; its session id."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = str(self.call("Target.attachToTarget",
                                {"targetId": target, "flatten": True})["sessionId"])
        self.resize(session, width, height)
        self.call("Page.enable", {}, session)
        navigated = self.call("Page.navigate", {"url": self.page.as_uri()}, session)
        if navigated.get("errorText"):
            raise CondPretrainError(f"{self.page}: the browser cannot open it "
                                    f"({navigated['errorText']})")
        self._until(lambda m: m.get("method") == "Page.loadEventFired"
                    and m.get("sessionId") == session)
        return session

    def resize(self, session: str, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                  "deviceScaleFactor": 1, "mobile": False}, session)

    def evaluate(self, session: str, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, session)
        if "exceptionDetails" in answer:
            text = answer["exceptionDetails"].get("text", "script error")
            raise CondPretrainError(f"{self.page}: the page check failed in the browser ({text})")
        return answer["result"].get("value")

    def call(self, method: str, params: dict[str, Any], session: str | None = None) -> Any:
        sent = self._send(method, params, session)
        answer = self._until(lambda m: m.get("id") == sent)
        if "error" in answer:
            raise CondPretrainError(f"{self.page}: the browser refused {method} "
                                    f"({answer['error'].get('message', '?')})")
        return answer.get("result", {})

    def _until(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first message ``wanted`` accepts; the others wait for a later call."""
        while not any(wanted(m) for m in self._unclaimed):
            self._unclaimed.append(self._receive())
        found = next(m for m in self._unclaimed if wanted(m))
        self._unclaimed.remove(found)
        return found

    def _send(self, method: str, params: dict[str, Any], session: str | None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params,
                   **({"sessionId": session} if session else {})}
        data = json.dumps(message).encode("utf-8") + b"\0"
        while data:
            if not select.select([], [self._commands], [], self._wait_s())[1]:
                raise self._timed_out()
            try:
                data = data[os.write(self._commands, data):]
            except BrokenPipeError:
                raise self._crashed() from None
        return self._next_id

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if not select.select([self._answers], [], [], self._wait_s())[0]:
                raise self._timed_out()
            chunk = os.read(self._answers, 1 << 20)
            if not chunk:
                raise self._crashed()
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _wait_s(self) -> float:
        if (left := self.remaining()) <= 0:
            raise self._timed_out()
        return left

    def _timed_out(self) -> CondPretrainError:
        return CondPretrainError(f"{self.page}: the browser ({self.executable}) did not answer "
                                 f"within {self.timeout:g} s")

    def _crashed(self) -> CondPretrainError:
        status = _exit_status(self._process.pid, 1.0)
        self._stderr.seek(0)
        said = [ln.strip() for ln in self._stderr.read()[-4096:].decode(errors="replace")
                .splitlines() if ln.strip()]
        return CondPretrainError(f"{self.page}: the browser ({self.executable}) exited"
                                 f"{'' if status is None else f' with status {status}'}"
                                 f"{f': {said[-1][:200]}' if said else ''}")


def _exit_status(pid: int, grace_s: float) -> int | None:
    """Wait up to ``grace_s`` for child ``pid`` to end, without reaping it; its exit status
    (minus the signal that killed it), or None while it runs."""
    end = time.monotonic() + grace_s
    while True:
        with contextlib.suppress(ChildProcessError):
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None:
                return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
        if time.monotonic() >= end:
            return None
        time.sleep(0.05)


__all__ = ["ReportView", "find_browser", "inspect_report", "screenshot", "MAX_CAPTURE_HEIGHT"]
