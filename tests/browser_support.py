"""A real JupyterLab and a headless Chromium for tests/test_browser.py.

Chromium and its driver are Debian's (``apt-get install chromium chromium-driver``),
driven by Selenium with the driver's path given, so nothing is downloaded at run
time. Every server and browser started here runs in its own process group and is
killed with it when its ``with`` block ends, whether the test passed or not.
Waits poll for a condition (a slow CI machine gets the whole timeout; a fast one
moves on at once).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = "install Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
# JupyterLab's settings in the temporary home: every cell stays in the page (no windowing), no
# news or update pop-ups over the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if absent:
        return f"{' and '.join(absent)} not found: {INSTALL_HINT}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[course]'"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the process group that ``proc`` leads, then SIGKILL to whatever is left of it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(grace)


def kill_processes_naming(marker: str) -> list[int]:
    """SIGKILL every process whose command line contains ``marker`` (a test's temporary folder):
    Jupyter starts kernels in sessions of their own, outside the server's process group."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
        except (OSError, ProcessLookupError):
            pass
    return killed


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment with a temporary home and, as when ``.venv/bin/jupyter lab`` is run
    from a shell without the venv activated, PATH without this interpreter's bin/."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_", "IPYTHON"))}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir)
    for name in ("VIRTUAL_ENV", "MPLBACKEND"):  # the Makefile's MPLBACKEND=Agg would hide every figure
        env.pop(name, None)
    env.update(HOME=str(home), **extra)
    return env


@dataclass
class Lab:
    """A running JupyterLab: its base URL, token and log."""

    base: str
    token: str
    log: Path

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}{sep}token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def jupyterlab(root: Path, home: Path, env: dict[str, str], *, timeout: float = 180):
    """JupyterLab serving ``root`` (also its working directory, where nbgrader's formgrader reads
    nbgrader_config.py) on 127.0.0.1 with a fresh token; stopped with its kernels on exit."""
    for name, values in LAB_SETTINGS.items():
        path = home / ".jupyter" / "lab" / "user-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: tests read the notebook model
    if os.geteuid() == 0:  # CI runs as root
        command.append("--allow-root")
    log = home / f"jupyterlab-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{lab.log_tail()}")
            try:
                with urllib.request.urlopen(lab.url("api/status"), timeout=5) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"JupyterLab did not answer within {timeout:.0f} s:\n{lab.log_tail()}")
            time.sleep(0.5)
        yield lab
    finally:
        _shut_down_kernels(lab)
        stop_group(proc)
        kill_processes_naming(str(home))


def _shut_down_kernels(lab: Lab) -> None:
    """Ask the server to stop its kernels (they do not share its process group)."""
    try:
        with urllib.request.urlopen(lab.url("api/kernels"), timeout=10) as reply:
            kernels = json.load(reply)
        for kernel in kernels:
            request = urllib.request.Request(lab.url(f"api/kernels/{kernel['id']}"), method="DELETE")
            urllib.request.urlopen(request, timeout=30).close()
    except (urllib.error.URLError, OSError, ValueError):
        pass  # the server is gone or going: kill_processes_naming still finds its kernels


@contextmanager
def chromium(profile: Path, *, width: int = 1400, height: int = 1000):
    """A headless Chromium (fresh profile) under Debian's chromedriver; both killed on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(profile / "chromedriver.log"),
                      popen_kw={"start_new_session": True})
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            if service.process is not None:
                stop_group(service.process, grace=5)
            kill_processes_naming(str(profile))


def wait_for(driver, script: str, *args, timeout: float = 60, what: str = "", interval: float = 0.5):
    """Poll ``script`` (JavaScript returning a value) until it is truthy; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what or script}")
        time.sleep(interval)


def poll(condition, *, timeout: float = 60, what: str = "", interval: float = 0.5):
    """Poll a Python callable until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what or condition}")
        time.sleep(interval)


class Screenshots:
    """Numbered PNGs in one folder: ``<prefix>-01-<step>.png``, ..."""

    def __init__(self, folder: Path, prefix: str):
        self.folder, self.prefix, self.count = Path(folder), prefix, 0
        self.folder.mkdir(parents=True, exist_ok=True)

    def save(self, driver, step: str, *, full_height: int | None = None) -> Path:
        """Save the window; with ``full_height`` the window is made that tall (at most 12,000 px) for
        the shot and then restored."""
        self.count += 1
        path = self.folder / f"{self.prefix}-{self.count:02d}-{step}.png"
        size = driver.get_window_size()
        if full_height:
            driver.set_window_size(size["width"], min(int(full_height), 12_000))
            time.sleep(1.0)  # one layout pass
        try:
            driver.save_screenshot(str(path))
        finally:
            if full_height:
                driver.set_window_size(size["width"], size["height"])
        return path


# -- JupyterLab, as a person uses it --------------------------------------------------
def click_menu(driver, menu: str, item: str, *, timeout: float = 30) -> None:
    """Open a menu of JupyterLab's menu bar and click the item whose label starts with ``item``."""
    from selenium.webdriver.common.by import By

    def find(selector, label, exact):
        for element in driver.find_elements(By.CSS_SELECTOR, selector):
            text = element.text.strip()
            if element.is_displayed() and (text == label if exact else text.startswith(label)):
                return element
        return None

    poll(lambda: find(".lm-MenuBar-item", menu, True), timeout=timeout, what=f"menu {menu!r}").click()
    poll(lambda: find(".lm-Menu-item", item, False), timeout=timeout, what=f"menu item {item!r}").click()


def paste_into_cell(driver, index: int, text: str) -> None:
    """Click into the editor of cell ``index``, select all, and paste ``text`` (a paste event
    carrying it, as Ctrl+V would deliver: the editor inserts it as is, without re-indenting)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    cell = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")[index]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
    editor = cell.find_element(By.CSS_SELECTOR, ".cm-content")
    editor.click()
    ActionChains(driver).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).perform()
    driver.execute_script(
        "const data = new DataTransfer(); data.setData('text/plain', arguments[1]);"
        "const paste = new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true});"
        "arguments[0].dispatchEvent(paste);",
        editor, text)


# -- what tests ask the page (JavaScript) ---------------------------------------------
NOTEBOOK = "window.jupyterapp.shell.currentWidget"  # JupyterLab's app, exposed by expose_app_in_browser
KERNEL_IDLE = f"""const panel = {NOTEBOOK};
const session = panel && panel.sessionContext && panel.sessionContext.session;
const kernel = session && session.kernel;
return !!kernel && kernel.status === 'idle' && panel.sessionContext.kernelDisplayStatus === 'idle';"""
_RUN_STATE = f"""const idle = (() => {{ {KERNEL_IDLE} }})();
const busy = [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')].some(p => p.textContent.includes('*'));
const cells = {NOTEBOOK}.content.widgets.map(c => c.model).filter(m => m.type === 'code');
const failed = cells.some(m => m.outputs.toJSON().some(o => o.output_type === 'error'));"""
RUN_STARTED = _RUN_STATE + "return busy || cells.some(m => m.executionCount !== null);"
# arguments[0]: the index of the cell that ends the run (Run All stops at the first error)
RUN_FINISHED = _RUN_STATE + f"""return idle && !busy &&
  (failed || {NOTEBOOK}.content.widgets[arguments[0]].model.executionCount !== null);"""

# Per cell, what the notebook holds (output types, from JupyterLab's model) and what the page shows
# (the output area's text and images).
CELLS = f"""return {NOTEBOOK}.content.widgets.map((cell, index) => {{
  const model = cell.model;
  const outputs = model.type === 'code' ? model.outputs.toJSON() : [];
  const area = cell.node.querySelector('.jp-OutputArea');
  return {{
    index, type: model.type, source: model.sharedModel.getSource(),
    execution_count: model.type === 'code' ? model.executionCount : null,
    outputs: outputs.map(o => ({{output_type: o.output_type, name: o.name || null, ename: o.ename || null}})),
    shown: area ? area.innerText : '',
    images: area ? [...area.querySelectorAll('img')].map(img => ({{width: img.naturalWidth}})) : [],
  }};
}});"""

# nbconvert pages (feedback, the formgrader's view of a submission): figures wider than their output area
WIDE_FIGURES = """return [...document.querySelectorAll('.output_subarea img')].filter(img => img.complete &&
  img.getBoundingClientRect().right > img.closest('.output_subarea').getBoundingClientRect().right + 1).length;"""
# nbgrader's formgrader tables: the text of the first row that mentions arguments[0], or null
TABLE_HAS_ROW = """const rows = [...document.querySelectorAll('table tbody tr')];
const row = rows.find(r => r.innerText.includes(arguments[0]));
return row ? row.innerText : null;"""
