"""`cvae-sdk serve`, tested as a client sees it: real server processes on 127.0.0.1 at ephemeral ports,
real HTTP requests (urllib), and a real headless Chromium for the web page."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cvae_sdk import Generator
from cvae_sdk.images import encode_png, make_image_grid

SCREENSHOTS = Path(os.environ.get("CVAE_SDK_SCREENSHOTS", Path(__file__).resolve().parent.parent / ".test-output"))


class Server:
    """A `cvae-sdk serve` subprocess; its URL comes from the one line it prints once bound."""

    def __init__(self, model: Path, *args: str, prelude: str = "") -> None:
        # `prelude` runs first in the server process: a fault a test injects into it
        command = ["-c", prelude + "\nfrom cvae_sdk.cli import main\nmain()"] if prelude else ["-m", "cvae_sdk"]
        self.process = subprocess.Popen([sys.executable, *command, "serve", str(model), "--port", "0",
                                         "--threads", "1", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("cvae-sdk serving on http://127.0.0.1:"):
            self.process.kill()
            raise AssertionError(f"no URL line: {line!r} {self.process.stderr.read() if self.process.stderr else ''}")
        self.url = line.split()[-1]
        deadline = time.monotonic() + 60
        while request(self, "GET", "/readyz")[0] != 200:
            assert time.monotonic() < deadline, "the model did not load within 60 s"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)


def request(server: Server, method: str, path: str, body: Any = None, raw: bytes | None = None,
            timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[Server]:
    running = Server(tiny_model, "--max-samples-per-request", "500")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def gen(tiny_model: Path) -> Generator:
    return Generator.from_pretrained(tiny_model, providers=["CPUExecutionProvider"], threads=1)


def _npy(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body), allow_pickle=False)


def test_health_model_and_schema(server: Server, gen: Generator) -> None:
    assert request(server, "GET", "/healthz")[0] == 200
    assert json.loads(request(server, "GET", "/readyz")[2]) == {"status": "ready"}
    model = json.loads(request(server, "GET", "/v1/model")[2])
    assert model["class_names"] == list(gen.config.class_names) and model["latent_dim"] == gen.config.latent_dim
    assert model["sample_shape"] == list(gen.config.sample_shape) and model["providers"] == ["CPUExecutionProvider"]
    assert model["weights_sha256"] == gen.config.weights_sha256
    schema = json.loads(request(server, "GET", "/openapi.json")[2])
    assert {"/v1/generate", "/v1/grid.png", "/v1/interpolate", "/v1/model"} <= set(schema["paths"])
    status, headers, page = request(server, "GET", "/")
    assert status == 200 and b"<button id=\"generate\"" in page and b"http" not in page.split(b"<script>")[1]


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_generate_npy_is_bit_identical_to_the_library(server: Server, gen: Generator, dtype: str) -> None:
    body = {"labels": [2, "top"], "num_samples_per_label": 3, "seed": 11, "temperature": 0.7,
            "output": "npy", "dtype": dtype}
    status, headers, data = request(server, "POST", "/v1/generate", body)
    want = gen.generate([2, "top"], 3, rng=11, temperature=0.7, output_type="np" if dtype == "float32" else "uint8")
    got = _npy(data)
    assert status == 200 and got.dtype == want.samples.dtype and np.array_equal(got, want.samples)
    assert headers["x-labels"] == ",".join(str(i) for i in want.labels)


def test_generate_png_and_json(server: Server, gen: Generator) -> None:
    want = gen.generate([0, 1], 4, rng=5, output_type="uint8")
    status, headers, png = request(server, "POST", "/v1/generate",
                                   {"labels": [0, 1], "num_samples_per_label": 4, "seed": 5, "output": "png"})
    names = [gen.config.class_names[i] for i in (0, 1)]
    assert status == 200 and headers["content-type"] == "image/png"
    assert png == encode_png(make_image_grid(want.samples, 4, row_labels=names))
    status, _, data = request(server, "POST", "/v1/generate",
                              {"labels": [0, 1], "num_samples_per_label": 4, "seed": 5, "output": "json"})
    doc = json.loads(data)
    assert doc["labels"] == want.labels.tolist() and len(doc["images"]) == 8
    assert base64.b64decode(doc["images"][0]) == encode_png(want.samples[0].transpose(1, 2, 0).copy())


def test_grid_and_interpolate(server: Server, gen: Generator) -> None:
    status, headers, png = request(server, "GET", "/v1/grid.png?label=top&label=2&n=3&seed=1&scale=2")
    want = gen.generate(["top", 2], 3, rng=1, output_type="uint8").samples
    expected = make_image_grid(want, 3, row_labels=["top", gen.config.class_names[2]], scale=2)
    assert status == 200 and png == encode_png(expected)
    _, _, default_scale = request(server, "GET", "/v1/grid.png?label=top&label=2&n=3&seed=1")
    assert default_scale == png  # cells enlarged twice by default, as `cvae-sdk sample --out x.png` draws them
    status, _, data = request(server, "POST", "/v1/interpolate",
                              {"start": 0, "end": 2, "steps": 5, "seed": 3, "output": "npy"})
    assert status == 200 and np.array_equal(_npy(data), gen.interpolate(0, 2, 5, rng=3).samples)


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("POST", "/v1/generate", {"labels": [7]}, 400, "out of range"),
    ("POST", "/v1/generate", {"labels": ["nope"]}, 400, "unknown"),
    ("POST", "/v1/generate", {"labels": [0], "num_samples_per_label": 0}, 400, ">= 1"),
    ("POST", "/v1/generate", {"labels": [0], "temperature": -1.0}, 400, "temperature"),
    ("POST", "/v1/generate", {"labels": [0], "temperature": 1e308}, 400, "finite and in [0, 10]"),
    ("POST", "/v1/generate", {"labels": [0], "num_samples_per_label": 501}, 413, "at most 500"),
    ("POST", "/v1/generate", {"labels": [0], "bogus": 1}, 422, "bogus"),
    ("POST", "/v1/generate", {"labels": [0], "num_samples_per_label": "3"}, 422, "num_samples_per_label"),
    ("POST", "/v1/generate", {"labels": [0], "output": "exe"}, 422, "output"),
    ("POST", "/v1/generate", {"labels": [0], "seed": 1.5}, 422, "seed"),
    ("POST", "/v1/interpolate", {"start": 0, "end": 9}, 400, "out of range"),
    ("GET", "/v1/grid.png?label=0&n=0", None, 400, "n must lie"),
    ("GET", "/v1/grid.png?label=../../etc/passwd", None, 400, "unknown class name"),
    ("GET", "/v1/nothing-here", None, 404, "Not Found"),
    ("GET", "/v1/generate", None, 405, "Method Not Allowed"),
])
def test_bad_input_gets_a_json_error(server: Server, method: str, path: str, body: Any, status: int,
                                     message: str) -> None:
    got, headers, data = request(server, method, path, body)
    assert got == status and message in json.loads(data)["error"], data


def test_a_body_over_the_limit_is_413(server: Server) -> None:
    huge = json.dumps({"labels": [0] * 40_000}).encode()
    status, _, data = request(server, "POST", "/v1/generate", raw=huge)
    assert status == 413 and "body over" in json.loads(data)["error"]


def _post_chunked(server: Server, path: str, chunks: list[bytes]) -> tuple[int, bytes]:
    """POST with Transfer-Encoding: chunked (no Content-Length header), one HTTP chunk per item."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", path, body=iter(chunks), headers={"Content-Type": "application/json"},
                           encode_chunked=True)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_chunked_bodies_are_read_whole_and_held_to_the_limit(server: Server, gen: Generator) -> None:
    body = json.dumps({"labels": [1, 2], "num_samples_per_label": 2, "seed": 5}).encode()
    status, data = _post_chunked(server, "/v1/generate", [body[:7], body[7:20], body[20:]])
    assert status == 200, data
    np.testing.assert_array_equal(_npy(data), gen.generate([1, 2], 2, rng=5).samples)
    huge = json.dumps({"labels": [0] * 40_000}).encode()  # no Content-Length to refuse it by
    status, data = _post_chunked(server, "/v1/generate", [huge[i:i + 4096] for i in range(0, len(huge), 4096)])
    assert status == 413 and "body over" in json.loads(data)["error"]


def _scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics read by Prometheus's own parser: each sample's value by name and labels."""
    status, headers, data = request(server, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(data.decode()) for s in family.samples}


def test_metrics_count_routes_batches_and_samples(server: Server) -> None:
    before = _scrape(server)
    for seed in range(3):
        request(server, "POST", "/v1/generate", {"labels": [0], "num_samples_per_label": 2, "seed": seed})
    after = _scrape(server)
    ok = ("cvae_requests_total", (("route", "/v1/generate"), ("status", "200")))
    assert after[ok] - before.get(ok, 0) == 3
    assert after[("cvae_samples_served_total", ())] - before[("cvae_samples_served_total", ())] == 6
    scrapes = ("cvae_requests_total", (("route", "/metrics"), ("status", "200")))
    assert after[scrapes] == before.get(scrapes, 0) + 1  # a scrape counts once it is answered
    assert after[("cvae_request_seconds_bucket", (("le", "+Inf"),))] == after[("cvae_request_seconds_count", ())]
    assert after[("cvae_batch_size_count", ())] >= 3
    assert after[("cvae_gc_frozen_objects", ())] > 10_000  # the loaded server froze its long-lived heap


def test_64_concurrent_clients_get_their_own_samples(server: Server, gen: Generator) -> None:
    def one(seed: int) -> tuple[int, np.ndarray]:
        body = {"labels": [seed % 3], "num_samples_per_label": 1 + seed % 4, "seed": seed}
        status, _, data = request(server, "POST", "/v1/generate", body, timeout=60)
        return status, _npy(data)

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(one, range(64)))
    for seed, (status, got) in enumerate(results):
        assert status == 200
        assert np.array_equal(got, gen.generate([seed % 3], 1 + seed % 4, rng=seed).samples)


def test_overload_answers_503_with_retry_after(tiny_model: Path) -> None:
    busy = Server(tiny_model, "--max-queue", "1", "--max-delay-ms", "200", "--max-gap-ms", "200")
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda s: request(busy, "POST", "/v1/generate", {"labels": [0], "seed": s}),
                                    range(16)))
        statuses = [status for status, _, _ in results]
        assert 200 in statuses and 503 in statuses
        refused = next(r for r in results if r[0] == 503)
        assert refused[1]["retry-after"] == "1" and "capacity" in json.loads(refused[2])["error"]
    finally:
        busy.stop()


def test_admission_counts_samples_not_only_requests(tiny_model: Path) -> None:
    # batches wait 0.8 s, so the first request is still in flight when the others arrive
    busy = Server(tiny_model, "--max-queued-samples", "8", "--max-delay-ms", "800", "--max-gap-ms", "800")
    try:
        with ThreadPoolExecutor(2) as pool:
            big = pool.submit(request, busy, "POST", "/v1/generate", {"labels": [0], "num_samples_per_label": 8})
            time.sleep(0.3)
            small = pool.submit(request, busy, "POST", "/v1/generate", {"labels": [1], "seed": 0})
            (status_big, _, _), (status_small, headers, data) = big.result(), small.result()
        assert status_big == 200  # alone in the server, a request is taken whatever its size
        assert status_small == 503 and headers["retry-after"] == "1"
        assert "8 samples in flight" in json.loads(data)["error"]
        status, _, _ = request(busy, "POST", "/v1/generate", {"labels": [1], "seed": 0})
        assert status == 200  # the work left, so room came back
    finally:
        busy.stop()


def test_access_log_prints_one_line_per_request(tiny_model: Path) -> None:
    logged = Server(tiny_model, "--access-log")
    try:
        assert request(logged, "POST", "/v1/generate", {"labels": [0], "seed": 0})[0] == 200
        assert request(logged, "GET", "/nowhere")[0] == 404
    finally:
        logged.stop()
    out = logged.process.stdout.read() if logged.process.stdout else ""
    assert '"POST /v1/generate HTTP/1.1" 200' in out and '"GET /nowhere HTTP/1.1" 404' in out


def test_a_request_past_its_timeout_is_504_and_the_server_carries_on(tiny_model: Path) -> None:
    # batches wait longer than requests may
    slow = Server(tiny_model, "--max-delay-ms", "600", "--max-gap-ms", "600", "--timeout", "0.1")
    try:
        status, _, data = request(slow, "POST", "/v1/generate", {"labels": [0], "seed": 0})
        assert status == 504 and "longer than 0.1 s" in json.loads(data)["error"]
        assert request(slow, "GET", "/v1/model")[0] == 200
    finally:
        slow.stop()


def test_sigterm_finishes_accepted_requests(tiny_model: Path) -> None:
    slow = Server(tiny_model, "--max-delay-ms", "800", "--max-gap-ms", "800")  # batches wait 0.8 s
    results: list[tuple[int, bytes]] = []

    def client(seed: int) -> None:
        status, _, data = request(slow, "POST", "/v1/generate", {"labels": [1], "seed": seed})
        results.append((status, data))

    clients = [threading.Thread(target=client, args=(s,)) for s in range(8)]
    for thread in clients:
        thread.start()
    time.sleep(0.3)  # accepted, waiting in the batcher
    slow.process.send_signal(signal.SIGTERM)
    for thread in clients:
        thread.join(timeout=60)
    assert len(results) == 8 and all(status == 200 for status, _ in results)
    assert slow.process.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained


def test_replicas_answer_the_same_bytes(tiny_model: Path) -> None:
    replicas = [Server(tiny_model), Server(tiny_model)]
    try:
        body = {"labels": [0, 1, 2], "num_samples_per_label": 5, "seed": 99, "output": "npy"}
        answers = [request(replica, "POST", "/v1/generate", body)[2] for replica in replicas]
        assert answers[0] == answers[1] and len(answers[0]) > 128
    finally:
        for replica in replicas:
            replica.stop()


def _workers(supervisor: int) -> list[int]:
    """The supervisor's worker processes (its other child is multiprocessing's resource tracker)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _listening_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket on ``port``."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                listening.add(f"socket:[{fields[9]}]")
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            held.add(os.readlink(fd))
        except OSError:  # closed meanwhile
            pass
    return bool(listening & held)


def test_workers_share_the_port_and_finish_accepted_requests_on_sigterm(tiny_model: Path, gen: Generator) -> None:
    served = Server(tiny_model, "--workers", "2", "--max-delay-ms", "800", "--max-gap-ms", "800")
    port = int(served.url.rsplit(":", 1)[1])
    workers = _workers(served.process.pid)
    assert len(workers) == 2 and all(_listening_on(pid, port) for pid in workers)
    results: dict[int, tuple[int, bytes]] = {}

    def client(seed: int) -> None:
        status, _, data = request(served, "POST", "/v1/generate", {"labels": [seed % 3], "seed": seed})
        results[seed] = (status, data)

    clients = [threading.Thread(target=client, args=(s,)) for s in range(12)]
    for thread in clients:
        thread.start()
    time.sleep(0.3)  # accepted by one worker or the other, waiting in its batcher
    served.process.send_signal(signal.SIGTERM)
    for thread in clients:
        thread.join(timeout=60)
    assert sorted(results) == list(range(12))
    for seed, (status, data) in results.items():
        assert status == 200 and np.array_equal(_npy(data), gen.generate([seed % 3], 1, rng=seed).samples)
    assert served.process.wait(timeout=60) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_a_worker_that_dies_is_replaced_on_its_socket(tiny_model: Path, gen: Generator) -> None:
    served = Server(tiny_model, "--workers", "2")
    try:
        port = int(served.url.rsplit(":", 1)[1])
        first = _workers(served.process.pid)
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (len(now := _workers(served.process.pid)) < 2 or first[0] in now) and time.monotonic() < deadline:
            time.sleep(0.05)
        replacement = next(pid for pid in now if pid not in first)
        assert first[1] in now and _listening_on(replacement, port)
        for seed in range(8):  # whichever worker answers (the new one may still load: 503 and Retry-After)
            while (answer := request(served, "POST", "/v1/generate", {"labels": [1], "seed": seed}))[0] == 503:
                assert answer[1]["retry-after"] == "1" and time.monotonic() < deadline
                time.sleep(0.1)
            assert answer[0] == 200 and np.array_equal(_npy(answer[2]), gen.generate([1], 1, rng=seed).samples)
        assert served.process.poll() is None
    finally:
        served.stop()
    assert served.process.returncode == 0
    assert "warning: worker 0 stopped on its own (exit code -9); starting another" in (
        served.process.stderr.read() if served.process.stderr else "")


def test_metrics_sum_over_workers(tiny_model: Path) -> None:
    served = Server(tiny_model, "--workers", "2")
    try:
        for seed in range(6):  # spread over the workers by the kernel, connection by connection
            assert request(served, "POST", "/v1/generate", {"labels": [0, 1], "seed": seed})[0] == 200
        ok = ("cvae_requests_total", (("route", "/v1/generate"), ("status", "200")))
        deadline = time.monotonic() + 10  # a request is counted once its answer has gone out, just after the client
        while _scrape(served)[ok] < 6 and time.monotonic() < deadline:  # has it
            time.sleep(0.05)
        counts = [(_scrape(served)[ok], _scrape(served)[("cvae_samples_served_total", ())]) for _ in range(4)]
        assert counts == [(6, 12)] * 4  # whichever worker answers the scrape
    finally:
        served.stop()


# The batcher's worker dies on the first batch holding label 2 (nothing in the package raises there).
DYING_BATCHER = """
from cvae_sdk.batcher import MicroBatcher
finish = MicroBatcher._finish
def dying(self, batch):
    if any(int(q.request.labels[0]) == 2 for q in batch):
        raise SystemError("simulated")
    finish(self, batch)
MicroBatcher._finish = dying
"""


def test_a_server_whose_batcher_dies_answers_503_and_exits_non_zero(tiny_model: Path, gen: Generator) -> None:
    # batches wait 50 ms, so every request goes through the batcher, never the inline path
    broken = Server(tiny_model, "--max-delay-ms", "50", "--max-gap-ms", "50", prelude=DYING_BATCHER)
    try:
        status, _, data = request(broken, "POST", "/v1/generate", {"labels": [0], "seed": 0})
        assert status == 200 and np.array_equal(_npy(data), gen.generate([0], 1, rng=0).samples)
        status, _, data = request(broken, "POST", "/v1/generate", {"labels": [2], "seed": 0})
        assert status == 503 and "worker stopped (SystemError: simulated)" in json.loads(data)["error"]
        assert broken.process.wait(timeout=60) == 1
    finally:
        broken.stop()
    err = broken.process.stderr.read() if broken.process.stderr else ""
    assert "error: the server stopped: the micro-batcher's worker stopped (SystemError: simulated)" in err
    assert "Traceback" not in err.split("error: the server stopped")[1]


def test_workers_that_cannot_load_the_model_exit_with_its_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    done = subprocess.run([sys.executable, "-m", "cvae_sdk", "serve", str(broken), "--port", "0", "--workers", "2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert "the model failed to load" in done.stderr and "a worker stopped on its own" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_page_draws_a_grid_in_a_real_browser(server: Server, gen: Generator) -> None:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, ("the browser test needs Debian's chromium and chromium-driver: "
                                      "apt-get install -y chromium chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,900"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        browser.get(server.url + "/")
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#labels input"))
        checked = len(browser.find_elements(By.CSS_SELECTOR, "#labels input:checked"))

        def grid_size(per_label: int) -> list[int]:  # the PNG the server draws, cells enlarged twice
            shape = make_image_grid(np.zeros((checked * per_label, *gen.config.sample_shape), np.uint8), per_label,
                                    row_labels=list(gen.config.class_names[:checked]), scale=2).shape
            return [shape[1], shape[0]]

        def shown(b: Any) -> Any:
            return b.execute_script("const i = document.getElementById('grid'); return !i.hidden && i.complete "
                                    "&& i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : null;")

        # a first grid (8 per label) and a download link appear on load, with no click
        WebDriverWait(browser, 30).until(lambda b: shown(b) == grid_size(8))
        link = browser.find_element(By.ID, "download")
        assert link.is_displayed() and "/v1/grid.png?" in (link.get_attribute("href") or "")
        browser.find_element(By.ID, "count").clear()
        browser.find_element(By.ID, "count").send_keys("4")
        browser.find_element(By.ID, "generate").click()
        WebDriverWait(browser, 30).until(lambda b: shown(b) == grid_size(4))
        assert "n=4" in (link.get_attribute("href") or "")
        browser.find_element(By.ID, "morph").click()
        WebDriverWait(browser, 30).until(lambda b: b.execute_script(
            "return document.getElementById('morph-frame').naturalWidth > 0;"))
        assert browser.find_element(By.ID, "error").text == ""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOTS / "serve-page.png"))
    finally:
        browser.quit()


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_outside_the_tcp_range_is_refused(tiny_model: Path, port: str) -> None:
    done = subprocess.run([sys.executable, "-m", "cvae_sdk", "serve", str(tiny_model), "--port", port],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "port must be an int in 0-65535" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
