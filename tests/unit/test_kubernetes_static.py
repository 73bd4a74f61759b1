"""deploy/kubernetes checked statically (no cluster here): the kustomize base, the
production overlay and the optional components render (tests/support/kustomize.py),
every object validates against the Kubernetes JSON schemas (kubernetes-validate), and
the gateway runs as docker-compose.yml runs it: same command, port, config paths and
environment, a config that loads from the projected ConfigMaps, probes on the
gateway's health routes, a drain that ends before the kill, and the HPA, PDB, Service,
NetworkPolicy, Ingress and ServiceMonitor pointing at the gateway's pods.

Each check is a function of the rendered objects; the breakage tests at the end edit a
scratch copy of the manifests and show that the check then fails."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from extensions.cli import build_parser
from extensions.config.errors import ConfigError
from extensions.config.loader import config_chain, litellm_model_groups, load_gateway_config
from extensions.config.schema import GatewayConfig
from extensions.launcher import per_worker_state
from tests.support import kubelet
from tests.support.kustomize import Obj, build, by_key

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
K8S = PurePosixPath("deploy/kubernetes")
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
COMPOSE_GATEWAY: dict[str, Any] = COMPOSE["services"]["gateway-1"]
COMPOSE_SIM: dict[str, Any] = COMPOSE["services"]["sim-provider"]
DOCKERFILE = (REPO / "Dockerfile").read_text()
NGINX_CONF = re.sub(r"#[^\n]*", "", (REPO / "deploy/nginx/nginx.conf").read_text())
# the schemas kubernetes-validate 1.37.0 ships, from the oldest we support to the newest
K8S_VERSIONS = tuple(f"1.{minor}" for minor in range(30, 38))
CRD_KINDS = {"ServiceMonitor"}  # no schema offline: checked field by field below
READY, LIVE = "/gateway/health/ready", "/gateway/health/live"  # no key needed
SECRET = "gateway-secrets"
REQUIRED_SECRETS = {"LITELLM_MASTER_KEY", "GATEWAY_REDIS_URL"}
K8S_ONLY_ENV = {"PROMETHEUS_MULTIPROC_DIR", "HOME"}
SECRET_NAME = re.compile(r"KEY|PASSWORD|TOKEN|SECRET")
# RSS of one worker, highest measured while serving: the 30-minute soak (README,
# 846 -> 886 MB); at a pod's start with an empty cache (the ONNX export), VmHWM of
# scripts/k8s_pod_smoke.py (docs/results/k8s_pod_smoke.json)
MEASURED_RSS_BYTES = 886 * 10**6
MEASURED_START_PEAK_BYTES = 1450 * 2**20
PINNED_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/-]*:(?!latest\b)(?=[\w.-]*\d)[\w][\w.-]*")
OPTIONAL_COMPONENTS = ("../../components/servicemonitor", "../../components/sim-provider")
EXAMPLE_REDIS_URL = "redis://redis.example.internal:6379/0"
KUBECTL = shutil.which("kubectl")  # its kustomize, where installed, checks our renderer


# --- rendering -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    objects: dict[tuple[str, str, str], Obj]

    def kind(self, kind: str) -> list[Obj]:
        return [obj for (k, _, _), obj in self.objects.items() if k == kind]

    def one(self, kind: str, name: str) -> Obj:
        found = [obj for obj in self.kind(kind) if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"{len(found)} objects {kind}/{name}"
        return found[0]


def copy_tree(root: Path) -> Path:
    """A scratch copy of what the manifests read: config/ and deploy/kubernetes/."""
    shutil.copytree(REPO / "config", root / "config")
    shutil.copytree(REPO / K8S, root / K8S)
    return root


def with_optional_components(root: Path) -> Path:
    """The production overlay of the tree at ``root`` with every optional component."""
    path = root / K8S / "overlays/production/kustomization.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["components"] = [*spec["components"], *OPTIONAL_COMPONENTS]
    path.write_text(yaml.safe_dump(spec))
    return path.parent


def render(folder: Path) -> Rendered:
    return Rendered(by_key(build(folder)))


@pytest.fixture(scope="session")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        "base": REPO / K8S / "base",
        "production": REPO / K8S / "overlays/production",
        # production + servicemonitor + sim-provider
        "full": with_optional_components(copy_tree(tmp_path_factory.mktemp("k8s"))),
    }


@pytest.fixture(scope="session")
def renders(folders: dict[str, Path]) -> dict[str, Rendered]:
    return {name: render(folder) for name, folder in folders.items()}


RENDERS = ["base", "production", "full"]


# --- helpers ---------------------------------------------------------------------------


def deployment(r: Rendered) -> Obj:
    return r.one("Deployment", "gateway")


def pod(r: Rendered) -> Obj:
    spec: Obj = deployment(r)["spec"]["template"]["spec"]
    return spec


def pod_labels(r: Rendered, name: str = "gateway") -> dict[str, str]:
    labels: dict[str, str] = r.one("Deployment", name)["spec"]["template"]["metadata"]["labels"]
    return labels


def container(r: Rendered) -> Obj:
    [gateway] = [c for c in pod(r)["containers"] if c["name"] == "gateway"]
    found: Obj = gateway
    return found


def pod_templates(r: Rendered) -> Iterator[tuple[str, Obj]]:
    for obj in r.kind("Deployment"):
        yield obj["metadata"]["name"], obj["spec"]["template"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels only, as ours are) against a pod's labels."""
    assert set(selector) <= {"matchLabels"}, f"unsupported selector {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def args_of(r: Rendered) -> Any:
    return build_parser().parse_args(container(r)["args"])  # exits (fails) on a bad flag


def env_of(c: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in c.get("env", [])}


def seconds(duration: str) -> float:
    value, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", duration).groups()  # type: ignore[union-attr]
    return float(value) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[unit]


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (250m, 1, 1Gi, 512M) as a number of cores or bytes."""
    number, suffix = re.fullmatch(r"(\d+(?:\.\d+)?)([a-zA-Z]*)", str(value)).groups()  # type: ignore[union-attr]
    factors = {
        "": 1,
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
    }
    return float(number) * factors[suffix]


def nginx_directive(name: str) -> str:
    [value] = re.findall(rf"(?m)^\s*{name}\s+([^;]*);", NGINX_CONF)
    return str(value).strip()


def container_port(c: Obj, port: str | int) -> int:
    """A probe's or Service's port (a name or a number) as the container's port number."""
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    number = ports.get(port) if isinstance(port, str) else port
    assert isinstance(number, int) and number in ports.values(), (
        f"port {port} is not a port of {c['name']}"
    )
    return number


def mounts(c: Obj) -> dict[str, Obj]:
    return {m["mountPath"]: m for m in c.get("volumeMounts", [])}


def volume(r: Rendered, name: str) -> Obj:
    [vol] = [v for v in pod(r)["volumes"] if v["name"] == name]
    found: Obj = vol
    return found


def writable_mount(r: Rendered, path: PurePosixPath) -> Obj | None:
    """The emptyDir mount (read-write) that holds ``path`` in the gateway container."""
    for mount_path, mount in mounts(container(r)).items():
        if path == PurePosixPath(mount_path) or PurePosixPath(mount_path) in path.parents:
            vol = volume(r, mount["name"])
            return vol if "emptyDir" in vol and not mount.get("readOnly", False) else None
    return None


def projected_files(r: Rendered, mount_path: PurePosixPath) -> dict[str, str]:
    """The files (path in the folder -> text) the volume mounted at ``mount_path`` shows."""
    vol = volume(r, mounts(container(r))[str(mount_path)]["name"])
    sources = vol["projected"]["sources"] if "projected" in vol else [vol]
    files: dict[str, str] = {}
    for source in sources:
        ref = source["configMap"]
        data = r.one("ConfigMap", ref["name"])["data"]
        items = ref.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            assert item["key"] in data, f"{ref['name']} has no key {item['key']}"
            files[item["path"]] = data[item["key"]]
    return files


def workdir() -> PurePosixPath:
    [folder] = re.findall(r"(?m)^WORKDIR\s+(\S+)", DOCKERFILE)
    return PurePosixPath(folder)


def gateway_config(r: Rendered) -> tuple[GatewayConfig, dict[str, str]]:
    """The gateway config as a pod loads it: from the mounted ConfigMaps, with the
    environment's Redis URL (a Secret in the cluster, an example value here)."""
    args = args_of(r)
    folder = PurePosixPath(args.gateway_config).parent
    files = projected_files(r, folder)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "config"
        kubelet.write_volume(root, files)
        local = root / PurePosixPath(args.gateway_config).relative_to(folder)
        litellm = root / PurePosixPath(args.config).relative_to(folder)
        try:
            config = load_gateway_config(
                local, litellm_model_groups(litellm), {"GATEWAY_REDIS_URL": EXAMPLE_REDIS_URL}
            )
        except ConfigError as exc:
            raise AssertionError(f"the mounted config does not load: {exc}") from exc
        for file in config_chain(local):
            assert root.resolve() in file.resolve().parents, f"{file} is outside the mount"
        for router in config.routers.values():
            for intent in router.intents:
                if intent.examples_file is not None:
                    path = local.parent / intent.examples_file
                    assert path.is_file(), f"{intent.examples_file} is not in the config volume"
    return config, files


# --- checks ----------------------------------------------------------------------------


def check_schemas(r: Rendered, version: str) -> None:
    for key, obj in r.objects.items():
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            raise AssertionError(f"{key} (Kubernetes {version}): {path}: {exc.message}") from exc


def check_command(r: Rendered) -> None:
    c = container(r)
    assert 'ENTRYPOINT ["gateway"]' in DOCKERFILE
    assert "command" not in c, "keep the image's ENTRYPOINT (gateway): set args only"
    assert c["args"] == COMPOSE_GATEWAY["command"], "args differ from docker-compose.yml"
    args = args_of(r)
    assert args.command == "proxy" and args.workers == 1 and args.server == "uvicorn"


def check_image(r: Rendered) -> None:
    compose_name, compose_tag = COMPOSE_GATEWAY["image"].split(":")
    for name, template in pod_templates(r):
        for c in template["spec"]["containers"]:
            image = c["image"]
            assert PINNED_IMAGE.fullmatch(image), f"{name}: pin a version tag, not {image}"
            repo, tag = image.rsplit(":", 1)
            assert repo.split("/")[-1] == compose_name and tag == compose_tag, (
                f"{name}: {image} is not docker-compose.yml's {COMPOSE_GATEWAY['image']}"
            )


def check_ports(r: Rendered) -> None:
    c = container(r)
    port = args_of(r).port
    assert container_port(c, "http") == port, f"containerPort is not --port {port}"
    [service_port] = r.one("Service", "gateway")["spec"]["ports"]
    assert service_port["port"] == port, f"the Service's port is not --port {port}"
    assert container_port(c, service_port["targetPort"]) == port, "targetPort"


def check_env(r: Rendered) -> None:
    env = env_of(container(r))
    compose_env = COMPOSE_GATEWAY["environment"]
    assert set(env) == set(compose_env) | K8S_ONLY_ENV, (
        f"env differs from docker-compose.yml: {sorted(set(env) ^ set(compose_env))}"
    )
    drain = env["GRACEFUL_SHUTDOWN_TIMEOUT"]["value"]
    assert drain == compose_env["GRACEFUL_SHUTDOWN_TIMEOUT"]


def check_secrets(r: Rendered) -> None:
    assert not r.kind("Secret"), "Secrets are created in the cluster, never rendered from here"
    for name, template in pod_templates(r):
        for c in template["spec"]["containers"]:
            for key, entry in env_of(c).items():
                if not SECRET_NAME.search(key):
                    continue
                assert "value" not in entry, f"{name}: {key} is inlined: use a secretKeyRef"
                ref = entry["valueFrom"]["secretKeyRef"]
                assert (ref["name"], ref["key"]) == (SECRET, key), f"{name}: {key}: {ref}"
                required = key in REQUIRED_SECRETS
                assert ref.get("optional", False) is not required, (
                    f"{name}: {key} must be {'required' if required else 'optional'}"
                )
    for key in REQUIRED_SECRETS:
        assert key in env_of(container(r)), f"{key} is not passed to the gateway"
    text = yaml.safe_dump(list(r.objects.values()))
    assert not re.search(r"\bsk-[A-Za-z0-9_-]{6,}", text), "a literal key is in the manifests"
    for url in re.findall(r"\b[a-z]+://[^\s'\"]+", text):
        assert urlsplit(url).password is None, f"{url}: a password is in the manifests"


def check_config_volume(r: Rendered) -> None:
    args = args_of(r)
    folder = PurePosixPath(args.config).parent
    assert PurePosixPath(args.gateway_config).parent == folder == PurePosixPath("/app/config")
    c = container(r)
    mount = mounts(c)[str(folder)]
    assert mount.get("readOnly") is True, f"{folder} is mounted writable"
    for m in c["volumeMounts"]:
        # a subPath mount never sees ConfigMap updates: the folder is mounted whole
        assert "subPath" not in m and "subPathExpr" not in m, f"{m['mountPath']} uses subPath"
    files = projected_files(r, folder)
    for path in (args.config, args.gateway_config):
        assert str(PurePosixPath(path).relative_to(folder)) in files, f"{path} is not mounted"
    # every key of the ConfigMaps reaches the folder (items leave unlisted keys out)
    sources = volume(r, mount["name"])["projected"]["sources"]
    for source in sources:
        ref = source["configMap"]
        keys = set(r.one("ConfigMap", ref["name"])["data"])
        listed = {item["key"] for item in ref.get("items", [])} if "items" in ref else keys
        assert listed == keys, f"{ref['name']}: keys not mounted: {sorted(keys - listed)}"


def check_reload_and_rollout(r: Rendered) -> None:
    """gateway.yaml's ConfigMap keeps its name (edited in place, reloaded live);
    litellm.yaml's carries a content hash (an edit is a new name: a rolling update)."""
    files = {}
    for source in volume(r, "config")["projected"]["sources"]:
        ref = source["configMap"]
        for item in ref["items"]:
            files[item["path"]] = ref["name"]
    assert files["gateway.production.yaml"] == files["gateway.yaml"] == "gateway-config", (
        "gateway.yaml must stay in ConfigMap gateway-config (no hash suffix): hot reload"
    )
    assert re.fullmatch(r"gateway-litellm-[a-z0-9]{10}", files["litellm.yaml"]), (
        "litellm.yaml's ConfigMap needs a hash suffix: LiteLLM reads it once"
    )


def check_config_loads(r: Rendered) -> None:
    config, _ = gateway_config(r)
    assert config.redis.url == EXAMPLE_REDIS_URL
    assert per_worker_state(config) == []  # shared through Redis, as in docker-compose.yml
    assert config.reload.watch, "reload.watch: hot reload of the mounted ConfigMap"
    # everything the gateway writes is on a writable emptyDir (read-only root filesystem)
    writes = {
        "request_log.dir": PurePosixPath(str(config.observability.request_log.dir)),
        "embedding.cache_dir": workdir() / str(config.embedding.cache_dir),
        "PROMETHEUS_MULTIPROC_DIR": PurePosixPath(
            env_of(container(r))["PROMETHEUS_MULTIPROC_DIR"]["value"]
        ),
        "HOME": PurePosixPath(env_of(container(r))["HOME"]["value"]),
        "/tmp": PurePosixPath("/tmp"),
    }
    for what, path in writes.items():
        assert writable_mount(r, path) is not None, f"{what} ({path}) is not on a writable emptyDir"


def check_probes(r: Rendered) -> None:
    c = container(r)
    port = args_of(r).port
    expected = {"startupProbe": LIVE, "livenessProbe": LIVE, "readinessProbe": READY}
    for probe_name, path in expected.items():
        probe = c.get(probe_name)
        assert probe, f"no {probe_name}"
        get = probe["httpGet"]
        assert get["path"] == path, f"{probe_name} must GET {path}, not {get['path']}"
        assert container_port(c, get["port"]) == port
        assert "httpHeaders" not in get, "the health routes need no key"
        assert probe.get("timeoutSeconds", 1) <= probe.get("periodSeconds", 10), probe_name
    startup = c["startupProbe"]
    window = startup["periodSeconds"] * startup["failureThreshold"]
    compose_start = seconds(COMPOSE_GATEWAY["healthcheck"]["start_period"])
    assert window >= compose_start, f"startup window {window} s < compose's {compose_start} s"
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 30, "liveness gives up too early"


def check_shutdown(r: Rendered) -> None:
    c = container(r)
    spec = pod(r)
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", f"preStop: {command}"
    pre_stop = float(command[1])
    assert pre_stop >= 5, "endpoints need a few seconds to forget the pod"
    drain = float(env_of(c)["GRACEFUL_SHUTDOWN_TIMEOUT"]["value"])
    grace = spec["terminationGracePeriodSeconds"]
    # the grace period counts from the start of preStop
    assert grace > pre_stop + drain, f"grace {grace} s <= preStop {pre_stop} s + drain {drain} s"
    assert spec.get("shareProcessNamespace") is True, "like compose's init: true"


def check_resources(r: Rendered) -> None:
    for name, template in pod_templates(r):
        for c in template["spec"]["containers"]:
            res = c.get("resources", {})
            for resource in ("cpu", "memory"):
                request = res.get("requests", {}).get(resource)
                limit = res.get("limits", {}).get(resource)
                assert request is not None and limit is not None, f"{name}: {resource} unset"
                assert quantity(request) <= quantity(limit), (
                    f"{name}: {resource} request {request} > limit {limit}"
                )
    requests = container(r)["resources"]["requests"]
    limits = container(r)["resources"]["limits"]
    assert quantity(requests["memory"]) >= MEASURED_RSS_BYTES, "below the measured RSS"
    assert quantity(limits["memory"]) >= 1.2 * MEASURED_START_PEAK_BYTES, (
        "the memory limit leaves < 20% over the start's peak: OOM-killed while starting"
    )
    assert quantity(requests["cpu"]) >= 1, "one worker uses about one core at full load"


def check_hpa(r: Rendered) -> None:
    [hpa] = r.kind("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert r.one("Deployment", target["name"]) is deployment(r), "the HPA scales another object"
    assert "replicas" not in deployment(r)["spec"], "the HPA owns replicas: an apply resets it"
    spec = hpa["spec"]
    assert 2 <= spec["minReplicas"] <= spec["maxReplicas"]
    [metric] = spec["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == (
        "Utilization"
    )
    assert "cpu" in container(r)["resources"]["requests"], "utilisation needs a CPU request"


def check_pdb(r: Rendered) -> None:
    [pdb] = r.kind("PodDisruptionBudget")
    selector = pdb["spec"]["selector"]
    for name, template in pod_templates(r):
        assert selects(selector, template["metadata"]["labels"]) == (name == "gateway"), (
            f"the PDB {'misses' if name == 'gateway' else 'also selects'} {name}"
        )
    [hpa] = r.kind("HorizontalPodAutoscaler")
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"], "maxUnavailable"


def check_service(r: Rendered) -> None:
    selector = {"matchLabels": r.one("Service", "gateway")["spec"]["selector"]}
    for name, template in pod_templates(r):
        assert selects(selector, template["metadata"]["labels"]) == (name == "gateway"), (
            f"the Service {'misses' if name == 'gateway' else 'also selects'} {name}"
        )
    assert r.one("Service", "gateway")["spec"].get("type", "ClusterIP") == "ClusterIP"


def check_deployments(r: Rendered) -> None:
    for obj in r.kind("Deployment"):
        spec = obj["spec"]
        assert selects(spec["selector"], spec["template"]["metadata"]["labels"]), (
            f"{obj['metadata']['name']}: the selector does not select its own pods"
        )


def check_network_policy(r: Rendered) -> None:
    policy = r.one("NetworkPolicy", "gateway")
    spec = policy["spec"]
    assert selects(spec["podSelector"], pod_labels(r)), "the NetworkPolicy misses the gateway pods"
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    port = args_of(r).port
    for rule in spec["ingress"]:
        assert [(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]] == [(port, "TCP")]
    allowed = {
        (p["port"], p.get("protocol", "TCP"))
        for rule in spec["egress"]
        for p in rule.get("ports", [])
    }
    needed = {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (443, "TCP")}
    assert needed <= allowed, f"egress misses {sorted(needed - allowed)}"
    assert all(rule.get("ports") for rule in spec["egress"]), "an egress rule opens every port"


def check_security(r: Rendered) -> None:
    [uid] = re.findall(r"useradd[^\n]*--uid\s+(\d+)", DOCKERFILE)
    for name, template in pod_templates(r):
        spec = template["spec"]
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == int(uid), name
        assert context["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        assert spec.get("enableServiceLinks") is False, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, f"{name}: writable root filesystem"
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name


def check_spread(r: Rendered) -> None:
    spec = pod(r)
    labels = pod_labels(r)
    keys = {
        t["topologyKey"]
        for t in spec["topologySpreadConstraints"]
        if selects(t["labelSelector"], labels)
    }
    assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys, (
        f"pods are not spread over nodes and zones: {sorted(keys)}"
    )
    [term] = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["podAffinityTerm"]["labelSelector"], labels)


def check_ingress(r: Rendered) -> None:
    [ingress] = r.kind("Ingress")
    notes = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    same_as_compose = {
        "proxy-body-size": nginx_directive("client_max_body_size"),
        "proxy-buffering": nginx_directive("proxy_buffering"),
        "proxy-request-buffering": nginx_directive("proxy_request_buffering"),
        "proxy-next-upstream": nginx_directive("proxy_next_upstream"),
        "proxy-next-upstream-tries": nginx_directive("proxy_next_upstream_tries"),
        "proxy-read-timeout": str(int(seconds(nginx_directive("proxy_read_timeout")))),
        "proxy-send-timeout": str(int(seconds(nginx_directive("proxy_send_timeout")))),
        "proxy-connect-timeout": str(int(seconds(nginx_directive("proxy_connect_timeout")))),
        "proxy-next-upstream-timeout": str(
            int(seconds(nginx_directive("proxy_next_upstream_timeout")))
        ),
    }
    for name, value in same_as_compose.items():
        assert notes.get(prefix + name) == value, f"{name}: {notes.get(prefix + name)} != {value}"
    assert "non_idempotent" not in notes[prefix + "proxy-next-upstream"], "POST repeated"
    config, _ = gateway_config(r)
    body = quantity(notes[prefix + "proxy-body-size"].upper().replace("M", "Mi"))
    assert body > config.requests.max_body_bytes, "the gateway's own 413 must be reachable"
    service = r.one("Service", "gateway")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"], "backend service"
            ports = {p["name"] for p in service["spec"]["ports"]}
            assert backend["port"]["name"] in ports, "backend port"


def check_service_monitor(r: Rendered) -> None:
    [monitor] = r.kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = r.one("Service", "gateway")
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    config, _ = gateway_config(r)
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == config.observability.metrics.path
    if config.observability.metrics.require_master_key:
        auth = endpoint["authorization"]
        key_ref = env_of(container(r))["LITELLM_MASTER_KEY"]["valueFrom"]["secretKeyRef"]
        assert auth["type"] == "Bearer", "bearer token"
        assert auth["credentials"] == {"name": key_ref["name"], "key": key_ref["key"]}, (
            "Prometheus must send the master key the gateway reads"
        )


def check_sim_provider(r: Rendered) -> None:
    sim_url = urlsplit(args_of(r).sim_url)
    service = r.one("Service", str(sim_url.hostname))
    assert [p["port"] for p in service["spec"]["ports"]] == [sim_url.port], (
        f"the Service {sim_url.hostname} does not serve the gateway's --sim-url"
    )
    [sim] = r.one("Deployment", "sim-provider")["spec"]["template"]["spec"]["containers"]
    assert sim["args"] == COMPOSE_SIM["command"], "args differ from docker-compose.yml"
    args = build_parser().parse_args(sim["args"])
    assert container_port(sim, service["spec"]["ports"][0]["targetPort"]) == args.port
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(r, "sim-provider"))
    # the gateway may call it: an egress rule of a policy that selects the gateway pods
    reachable = False
    for policy in r.kind("NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], pod_labels(r)):
            continue
        for rule in policy["spec"].get("egress", []):
            peers = [p.get("podSelector") for p in rule.get("to", [])]
            ports = [p["port"] for p in rule.get("ports", [])]
            if args.port in ports and any(
                p is not None and selects(p, pod_labels(r, "sim-provider")) for p in peers
            ):
                reachable = True
    assert reachable, "no NetworkPolicy lets the gateway call the simulated provider"


Check = Callable[[Rendered], None]
EVERY_RENDER: dict[str, Check] = {
    "command": check_command,
    "image": check_image,
    "ports": check_ports,
    "env": check_env,
    "secrets": check_secrets,
    "config_volume": check_config_volume,
    "reload_and_rollout": check_reload_and_rollout,
    "config_loads": check_config_loads,
    "probes": check_probes,
    "shutdown": check_shutdown,
    "resources": check_resources,
    "hpa": check_hpa,
    "pdb": check_pdb,
    "service": check_service,
    "deployments": check_deployments,
    "network_policy": check_network_policy,
    "security": check_security,
    "spread": check_spread,
}
OVERLAY_ONLY: dict[str, tuple[Check, list[str]]] = {
    "ingress": (check_ingress, ["production", "full"]),
    "service_monitor": (check_service_monitor, ["full"]),
    "sim_provider": (check_sim_provider, ["full"]),
}


# --- the tests -------------------------------------------------------------------------


def test_renders_hold_the_expected_objects(renders: dict[str, Rendered]) -> None:
    kinds = {name: sorted(k for k, _, _ in r.objects) for name, r in renders.items()}
    common = [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    assert kinds["base"] == common
    assert kinds["production"] == sorted([*common, "Ingress"])
    assert kinds["full"] == sorted(
        [
            *common,
            "Ingress",
            "ServiceMonitor",
            "Deployment",
            "Service",
            "NetworkPolicy",
            "NetworkPolicy",
        ]
    )
    for name in ("production", "full"):
        namespaces = {ns for _, ns, _ in renders[name].objects}
        assert namespaces == {"model-gateway"}, f"{name}: {namespaces}"


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed: no reference to compare")
@pytest.mark.parametrize("which", RENDERS)
def test_renderer_prints_what_kubectl_kustomize_prints(
    folders: dict[str, Path], renders: dict[str, Rendered], which: str
) -> None:
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(folders[which])], capture_output=True, text=True, check=True
    ).stdout
    assert by_key([doc for doc in yaml.safe_load_all(out) if doc]) == renders[which].objects


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("which", RENDERS)
def test_objects_validate_against_the_kubernetes_schemas(
    renders: dict[str, Rendered], which: str, version: str
) -> None:
    check_schemas(renders[which], version)


@pytest.mark.parametrize("check", sorted(EVERY_RENDER))
@pytest.mark.parametrize("which", RENDERS)
def test_every_render(renders: dict[str, Rendered], which: str, check: str) -> None:
    EVERY_RENDER[check](renders[which])


@pytest.mark.parametrize(
    ("check", "which"),
    [(check, which) for check, (_, whiches) in sorted(OVERLAY_ONLY.items()) for which in whiches],
)
def test_overlay(renders: dict[str, Rendered], check: str, which: str) -> None:
    OVERLAY_ONLY[check][0](renders[which])


def test_production_image_comes_from_a_registry(renders: dict[str, Rendered]) -> None:
    image = container(renders["production"])["image"]
    assert "/" in image.split(":")[0], f"{image}: a cluster pulls from a registry"


# --- deliberate breakages: each check fails on a manifest that breaks it ------------------

BREAKAGES = [
    # (check, file of the scratch copy, text, replacement, render, the failure expected)
    (
        "command",
        "deploy/kubernetes/base/deployment.yaml",
        '"--workers", "1"',
        '"--workers", "2"',
        "production",
        "args differ",
    ),
    (
        "ports",
        "deploy/kubernetes/base/service.yaml",
        "port: 4000",
        "port: 80",
        "production",
        "Service's port",
    ),
    (
        "env",
        "deploy/kubernetes/base/deployment.yaml",
        "- name: OPENAI_API_KEY",
        "- name: OPENAI_KEY",
        "production",
        "env differs",
    ),
    (
        "secrets",
        "deploy/kubernetes/base/deployment.yaml",
        "key: ANTHROPIC_API_KEY\n                  optional: true",
        "key: ANTHROPIC_API_KEY",
        "production",
        "ANTHROPIC_API_KEY must be optional",
    ),
    (
        "secrets",
        "deploy/kubernetes/base/deployment.yaml",
        "- name: HOME\n              value: /tmp",
        "- name: HOME\n              value: /tmp\n            - name: EXTRA_TOKEN\n"
        "              value: sk-live-0123456789",
        "production",
        "EXTRA_TOKEN is inlined",
    ),
    (
        "config_volume",
        "deploy/kubernetes/base/deployment.yaml",
        "mountPath: /app/config\n",
        "mountPath: /app/config\n              subPath: config\n",
        "production",
        "uses subPath",
    ),
    (
        "config_volume",
        "config/kustomization.yaml",
        "      - examples/technical_issue.txt\n",
        "      - examples/technical_issue.txt\n      - simprovider.yaml\n",
        "production",
        "keys not mounted",
    ),
    (
        "reload_and_rollout",
        "config/kustomization.yaml",
        "      disableNameSuffixHash: true\n",
        "",
        "production",
        "must stay in ConfigMap gateway-config",
    ),
    (
        "config_loads",
        "deploy/kubernetes/base/deployment.yaml",
        "path: examples/technical_issue.txt",
        "path: technical_issue.txt",
        "production",
        "examples/technical_issue.txt",
    ),
    (
        "config_loads",
        "deploy/kubernetes/base/deployment.yaml",
        "mountPath: /app/logs",
        "mountPath: /app/request-logs",
        "production",
        "request_log.dir",
    ),
    (
        "probes",
        "deploy/kubernetes/base/deployment.yaml",
        "path: /gateway/health/ready",
        "path: /health/readiness",
        "production",
        "must GET /gateway/health/ready",
    ),
    (
        "probes",
        "deploy/kubernetes/base/deployment.yaml",
        "failureThreshold: 90",
        "failureThreshold: 10",
        "production",
        "startup window",
    ),
    (
        "shutdown",
        "deploy/kubernetes/base/deployment.yaml",
        "terminationGracePeriodSeconds: 45",
        "terminationGracePeriodSeconds: 30",
        "production",
        "grace 30",
    ),
    (
        "resources",
        "deploy/kubernetes/base/deployment.yaml",
        "memory: 1Gi",
        "memory: 3Gi",
        "production",
        "memory request 3Gi > limit",
    ),
    (
        "resources",
        "deploy/kubernetes/base/deployment.yaml",
        "memory: 2Gi",
        "memory: 1536Mi",
        "production",
        "OOM-killed while starting",
    ),
    (
        "hpa",
        "deploy/kubernetes/base/hpa.yaml",
        "    name: gateway\n  minReplicas",
        "    name: gateway-old\n  minReplicas",
        "base",
        "Deployment/gateway-old",
    ),
    (
        "pdb",
        "deploy/kubernetes/base/pdb.yaml",
        "      app.kubernetes.io/component: gateway",
        "      app.kubernetes.io/component: api",
        "base",
        "the PDB misses gateway",
    ),
    (
        "network_policy",
        "deploy/kubernetes/base/networkpolicy.yaml",
        "      app.kubernetes.io/component: gateway",
        "      app.kubernetes.io/component: api",
        "base",
        "misses the gateway pods",
    ),
    (
        "network_policy",
        "deploy/kubernetes/base/networkpolicy.yaml",
        "        - port: 6379\n          protocol: TCP\n",
        "",
        "base",
        "egress misses",
    ),
    (
        "security",
        "deploy/kubernetes/base/deployment.yaml",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
        "base",
        "writable root filesystem",
    ),
    (
        "ingress",
        "deploy/kubernetes/components/ingress/ingress.yaml",
        "proxy-body-size: 5m",
        "proxy-body-size: 1m",
        "production",
        "proxy-body-size",
    ),
    (
        "ingress",
        "deploy/kubernetes/components/ingress/ingress.yaml",
        "error timeout http_502 http_503",
        "error timeout http_502 http_503 non_idempotent",
        "production",
        "proxy-next-upstream",
    ),
    (
        "service_monitor",
        "deploy/kubernetes/components/servicemonitor/servicemonitor.yaml",
        "key: LITELLM_MASTER_KEY",
        "key: OPENAI_API_KEY",
        "full",
        "the master key the gateway reads",
    ),
    (
        "image",
        "deploy/kubernetes/overlays/production/kustomization.yaml",
        'newTag: "0.1.0"',
        'newTag: "0.2.0"',
        "production",
        "is not docker-compose.yml's",
    ),
    (
        "deployments",
        "deploy/kubernetes/base/deployment.yaml",
        "\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: model-gateway\n"
        "      app.kubernetes.io/component: gateway",
        "\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: model-gateway\n"
        "      app.kubernetes.io/component: api",
        "base",
        "does not select its own pods",
    ),
    (
        "service",
        "deploy/kubernetes/base/service.yaml",
        "    app.kubernetes.io/component: gateway\n  ports",
        "    app.kubernetes.io/component: api\n  ports",
        "base",
        "the Service misses gateway",
    ),
    (
        "spread",
        "deploy/kubernetes/base/deployment.yaml",
        "topologyKey: topology.kubernetes.io/zone",
        "topologyKey: example.com/rack",
        "base",
        "not spread over nodes and zones",
    ),
    (
        "sim_provider",
        "deploy/kubernetes/components/sim-provider/sim-provider.yaml",
        "      port: 8010\n      targetPort",
        "      port: 8011\n      targetPort",
        "full",
        "does not serve the gateway's --sim-url",
    ),
]
SCHEMA_BREAKAGES = [
    ("deploy/kubernetes/base/deployment.yaml", "periodSeconds: 5", 'periodSeconds: "5"'),
    ("deploy/kubernetes/base/pdb.yaml", "maxUnavailable: 1", "maxUnavailble: 1"),
    (
        "deploy/kubernetes/base/networkpolicy.yaml",
        "policyTypes: [Ingress, Egress]",
        "policyTypes: Ingress",
    ),
]


def broken_render(tmp_path: Path, file: str, text: str, replacement: str, which: str) -> Rendered:
    root = copy_tree(tmp_path)
    path = root / file
    original = path.read_text()
    assert original.count(text) == 1, f"{file}: {text!r} is not there exactly once"
    path.write_text(original.replace(text, replacement))
    if which == "full":
        return render(with_optional_components(root))
    return render(root / K8S / ("base" if which == "base" else "overlays/production"))


@pytest.mark.parametrize(
    ("check", "file", "text", "replacement", "which", "failure"),
    BREAKAGES,
    ids=[f"{b[0]}: {b[5]}" for b in BREAKAGES],
)
def test_breakage_is_caught(
    tmp_path: Path, check: str, file: str, text: str, replacement: str, which: str, failure: str
) -> None:
    checks = {**EVERY_RENDER, **{name: fn for name, (fn, _) in OVERLAY_ONLY.items()}}
    broken = broken_render(tmp_path, file, text, replacement, which)
    with pytest.raises(AssertionError, match=re.escape(failure)):
        checks[check](broken)


def test_every_check_has_a_breakage() -> None:
    names = set(EVERY_RENDER) | set(OVERLAY_ONLY)
    broken = {check for check, *_ in BREAKAGES}
    assert names == broken, f"checks never shown to fail: {sorted(names - broken)}"


@pytest.mark.parametrize(("file", "text", "replacement"), SCHEMA_BREAKAGES)
def test_schema_breakage_is_caught(tmp_path: Path, file: str, text: str, replacement: str) -> None:
    broken = broken_render(tmp_path, file, text, replacement, "base")
    with pytest.raises(AssertionError, match=r"\(Kubernetes 1\.3\d\)"):
        check_schemas(broken, K8S_VERSIONS[-1])
