"""Start the gateway as deploy/kubernetes runs it in a pod, without a cluster.

Linux, as root (mount namespaces): the rendered base's args and environment, uid 10001,
a read-only root filesystem with writable tmpfs only where the pod has an emptyDir
(/tmp, /app/.cache/gateway, /app/logs, /run/gateway-metrics), and /app/config as the
ConfigMap volume laid out as kubelet lays it out (read-only, ``..data`` link). Redis
and the simulated provider run beside it on this host. It prints, as JSON: the time to
ready with an empty cache (the ONNX export included), the peak RSS, whether requests
and /metrics answer, how long a ConfigMap edit takes to be served, and how long
SIGTERM takes to stop it.

    sudo PYTHONPATH=$PWD .venv/bin/python scripts/k8s_pod_smoke.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from extensions.launcher import wait_http_ok
from tests.support import kubelet
from tests.support.kustomize import Obj, build
from tests.support.processes import free_port
from tests.support.redis_server import RedisServer
from tests.support.stack import SimProvider

REPO = Path(__file__).resolve().parents[1]
IMAGE_ENV = {  # the Dockerfile's ENV
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}
MASTER_KEY = "sk-smoke-" + os.urandom(8).hex()
UID = 10001
NEW_REPLY = "Reset it here: {reset_url} (edited through the ConfigMap)."


def gateway_pod(objects: list[Obj]) -> tuple[Obj, dict[str, str]]:
    """The gateway container and its config folder's files (path -> text)."""
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    [container] = spec["containers"]
    maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    [config] = [v for v in spec["volumes"] if v["name"] == "config"]
    files = {}
    for source in config["projected"]["sources"]:
        ref = source["configMap"]
        for item in ref["items"]:
            files[item["path"]] = maps[ref["name"]][item["key"]]
    return container, files


def pod_environment(container: Obj, redis_url: str) -> dict[str, str]:
    secrets = {
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "GATEWAY_REDIS_URL": redis_url,
        "SIM_API_KEY": "sim-provider-key",
    }
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        **IMAGE_ENV,
        "PYTHONPATH": str(REPO),
    }  # this checkout's code, as the image's /app holds it
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif entry["name"] in secrets:
            env[entry["name"]] = secrets[entry["name"]]
    return env


def pod_args(container: Obj, port: int, sim_url: str) -> list[str]:
    """The container's args, on a free port of this host and the local simulated provider."""
    args = list(container["args"])
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--sim-url") + 1] = sim_url
    return args


def namespace_script(config_dir: Path, container: Obj, args: list[str]) -> str:
    """Shell run in a new mount namespace: the pod's filesystem, then the gateway."""
    mounts = {m["mountPath"] for m in container["volumeMounts"]} - {"/app/config", "/tmp"}
    lines = [
        "set -eu",
        "mount -t tmpfs -o size=1m tmpfs /app",
        "mkdir -p /app/config " + " ".join(sorted(m for m in mounts if m.startswith("/app/"))),
        f"mount --bind {config_dir} /app/config",
        "mount -o remount,bind,ro /app/config",
    ]
    for path in sorted(mounts):
        if not path.startswith("/app/"):  # e.g. /run/gateway-metrics: a fresh /run first
            parent = "/" + PurePosixPath(path).parts[1]
            lines += [f"mount -t tmpfs tmpfs {parent}", f"mkdir -p {path}"]
        lines.append(f"mount -t tmpfs -o size=1g,mode=1777 tmpfs {path}")
    lines += expose_interpreter(config_dir.parent / "interpreter")
    lines += [
        "mount -o remount,ro /app",
        "mount -t tmpfs -o mode=1777 tmpfs /tmp",
        "mount -o remount,bind,ro /",
        "cd /app",
        f"exec setpriv --reuid {UID} --regid {UID} --clear-groups "
        f"{Path(sys.executable).parent}/gateway " + " ".join(args),
    ]
    return "\n".join(lines)


def expose_interpreter(spare: Path) -> list[str]:
    """Shell lines that let uid 10001 reach this Python (the image's is in /usr/local;
    here it may sit below a private folder such as /root): that folder becomes an empty
    tmpfs holding only the interpreter's tree."""
    real = Path(os.path.realpath(sys.executable))
    for folder in real.parents:
        if folder != Path("/") and not folder.stat().st_mode & 0o001:
            tree = real.parents[len(real.parents) - len(folder.parts) - 1]
            return [
                f"mkdir -p {spare}",
                f"mount --bind {tree} {spare}",
                f"mount -t tmpfs -o mode=755 tmpfs {folder}",
                f"mkdir -p {tree}",
                f"mount --bind {spare} {tree}",
            ]
    return []


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def chat(base: str, model: str, text: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": model, "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )


def run(work: Path, out: dict[str, Any]) -> None:
    container, files = gateway_pod(build(REPO / "deploy/kubernetes/base"))
    config_dir = work / "config"
    kubelet.write_volume(config_dir, files)
    redis = RedisServer(work / "redis").start()
    sim = SimProvider(work).start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = pod_environment(container, redis.url)
    script = namespace_script(config_dir, container, pod_args(container, port, sim.url))
    log = (work / "gateway.log").open("w")
    started = time.monotonic()
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http_ok(f"{base}/health/readiness", 300, proc)
        out["ready_s_empty_cache"] = round(time.monotonic() - started, 1)
        for route in ("/gateway/health/ready", "/gateway/health/live"):
            out[f"GET {route}"] = httpx.get(base + route, timeout=5).status_code
        model = chat(base, "gpt-sim", "Hello")
        routed = chat(base, "support-bot", "I forgot my password")
        out["chat gpt-sim"] = model.status_code
        out["chat support-bot"] = routed.status_code
        metrics = httpx.get(
            f"{base}/metrics", timeout=10, headers={"Authorization": f"Bearer {MASTER_KEY}"}
        )
        out["GET /metrics"] = metrics.status_code
        root = Path(f"/proc/{proc.pid}/root")
        out["metrics files"] = len(list((root / "run/gateway-metrics").glob("*.db")))
        out["request log files"] = sorted(p.name for p in (root / "app/logs").iterdir())
        out["onnx cache MB"] = round(
            sum(p.stat().st_size for p in (root / "app/.cache/gateway").rglob("*") if p.is_file())
            / 1e6,
            1,
        )
        # an edit of gateway.yaml through the ConfigMap (kubelet's swap), until served
        old_reply = "You can reset your password here: {reset_url}"
        edited = {
            **files,
            "gateway.yaml": files["gateway.yaml"].replace(
                old_reply + " (the link is valid for 30 minutes).", NEW_REPLY
            ),
        }
        assert edited != files, "the reply to edit is not in gateway.yaml"
        kubelet.update_volume(config_dir, edited)
        swapped = time.monotonic()
        deadline = swapped + 30
        while time.monotonic() < deadline:
            reply = chat(base, "support-bot", "I forgot my password").json()
            if "edited through the ConfigMap" in reply["choices"][0]["message"]["content"]:
                out["reload_s_after_swap"] = round(time.monotonic() - swapped, 1)
                break
            time.sleep(0.2)
        out["peak_rss_mb"] = round(peak_rss_mb(proc.pid), 1)
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out["exit_code"] = proc.wait(timeout=60)
        out["stop_s"] = round(time.monotonic() - stopping, 1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sim.stop()
        redis.stop()
        log.close()
    text = (work / "gateway.log").read_text()
    out["read-only errors in the log"] = [
        line[:200]
        for line in text.splitlines()
        if "Read-only file system" in line or "not writable" in line or "Permission denied" in line
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("k8s_pod_smoke: needs root (mount namespaces)", file=sys.stderr)
        return 2
    made_app = not Path("/app").exists()
    if made_app:
        Path("/app").mkdir()  # a mount point only; removed at the end
    work = Path(tempfile.mkdtemp(prefix="k8s-pod-smoke-"))
    work.chmod(0o755)
    out: dict[str, Any] = {
        "command": "sudo PYTHONPATH=$PWD .venv/bin/python scripts/k8s_pod_smoke.py",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "render": "deploy/kubernetes/base (tests/support/kustomize.py)",
    }
    try:
        run(work, out)
    finally:
        if made_app:
            Path("/app").rmdir()
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if options.json:
        options.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
