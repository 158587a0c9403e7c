"""Screenshots of the responder's console on the demo: starts `agentledger up` in a scratch folder, sends
`agentledger demo`, then saves the runs list, each incident's summary and a waterfall (Debian chromium
through Playwright), plus each demo run's findings as JSON.

    .venv/bin/python docs/console/take.py docs/console
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    http, grpc, api_port = _free_port(), _free_port(), _free_port()
    data = Path(tempfile.mkdtemp(prefix="agentledger-shots-"))
    command = [sys.executable, "-m", "agentledger", "up", "--data-dir", str(data / "data"),
               "--otlp-http-port", str(http), "--otlp-grpc-port", str(grpc), "--api-port", str(api_port)]  # fmt: skip
    with (data / "up.log").open("w") as log:
        up = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{api_port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(api + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        demo = subprocess.run(
            [sys.executable, "-m", "agentledger", "demo", "--collector-url", f"http://127.0.0.1:{http}",
             "--api-url", api],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        time.sleep(4)  # the collector's batches reach storage
        runs = [line.split("\t") for line in demo.stdout.splitlines() if line.startswith("run_")]
        found = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(api + "/ui")
            page.wait_for_selector("tr.run")
            time.sleep(2)
            page.screenshot(path=str(out / "runs-list.png"), full_page=True)
            for run_id, description, *_ in runs:
                audit = httpx.get(f"{api}/v1/runs/{run_id}/audit").json()
                findings = [(f["rule"], f["severity"]) for f in audit["findings"]]
                found.append({"run": run_id, "description": description, "findings": findings})
                if description.startswith("INCIDENT"):
                    name = re.sub(r"[^a-z0-9]+", "-", description.split(":")[0].lower()).strip("-")
                    page.goto(f"{api}/ui?run={run_id}")
                    time.sleep(2.5)
                    page.screenshot(path=str(out / f"{name}.png"))
            page.goto(f"{api}/ui?run={runs[0][0]}")
            time.sleep(2.5)
            page.locator("#waterfall, .waterfall").first.screenshot(path=str(out / "waterfall.png"))
            browser.close()
        (out / "demo-findings.json").write_text(json.dumps(found, indent=1) + "\n", encoding="utf-8")
    finally:
        up.terminate()
        up.wait(30)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console"))
