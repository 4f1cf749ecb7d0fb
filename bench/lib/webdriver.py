"""A small W3C WebDriver client (standard library only) for Debian's chromedriver and headless
Chromium: start, open a URL, run a script, refresh, quit. WebDriver is plain HTTP with JSON bodies.

    with Chromium(workdir) as browser:
        browser.open("http://127.0.0.1:8080/page")
        browser.run("return document.title")
"""

import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.request

from benchlib import Proc, log

BROWSER = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"


class WebDriverError(RuntimeError):
    pass


class Chromium:
    """chromedriver in its own process group (stopped by its id) and one headless session."""

    def __init__(self, workdir, host_rules=None):
        for path in (BROWSER, DRIVER):
            if not os.access(path, os.X_OK):
                raise SystemExit(f"{path} is missing: run bench/setup (installs chromium and chromium-driver)")
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir)
        self.driver = Proc([DRIVER, "--port=0"], logfile=os.path.join(workdir, "chromedriver.log"))
        found = self.driver.wait_for_line(r"started successfully on port (\d+)", timeout=30)
        if not found:
            self.driver.stop()
            raise WebDriverError("chromedriver did not start")
        self.port = int(found[2].group(1))
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={self.profile}", "--no-first-run",
                "--disable-background-networking", "--disable-dev-shm-usage"]
        if host_rules:
            args.append(f"--host-resolver-rules={host_rules}")
        created = self._call("POST", "/session", {
            "capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": BROWSER, "args": args}}}}, timeout=60)
        self.session = created["sessionId"]
        log(f"chromium session {self.session[:8]} via chromedriver on port {self.port}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.quit()

    def _call(self, method, path, body=None, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.load(response).get("value")
        except urllib.error.HTTPError as error:
            raise WebDriverError(f"{method} {path}: {error.code} {error.read()[:400]!r}") from None

    def _session(self, method, path, body=None, timeout=30):
        return self._call(method, f"/session/{self.session}/{path}", body, timeout)

    def open(self, url):
        """Navigates and returns once the document has loaded."""
        self._session("POST", "url", {"url": url}, timeout=60)

    def refresh(self):
        self._session("POST", "refresh", {}, timeout=60)

    def run(self, script, *args):
        return self._session("POST", "execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script, timeout=60.0, interval=0.01):
        """Polls `script` until it returns something truthy; that value, or None after `timeout`.
        A script error (the page is between documents) counts as not yet."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.run(script)
            except (WebDriverError, OSError):
                value = None
            if value:
                return value
            time.sleep(interval)
        return None

    def quit(self):
        try:
            self._call("DELETE", f"/session/{self.session}", timeout=20)
        except Exception as error:  # the browser may be gone already
            log(f"chromium: ending the session: {error}")
        self.driver.stop()


def page_text_script():
    """JavaScript: the page's text, the insides of shadow roots included (an overlay may draw there)."""
    return re.sub(r"\s+", " ", """
        const parts = [];
        const visit = (root) => { for (const e of root.querySelectorAll('*')) {
          if (e.shadowRoot) { parts.push(e.shadowRoot.textContent || ''); visit(e.shadowRoot); } } };
        if (document.body) { parts.push(document.body.innerText || ''); visit(document); }
        return parts.join('\\n');
    """)
