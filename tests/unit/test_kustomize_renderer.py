"""The small kustomize renderer of the static tests (tests/support/kustomize.py): each
feature it supports, what it refuses, and, where kubectl is installed, the same objects
as ``kubectl kustomize`` for the example here (test_kubernetes_static.py compares the
renders of deploy/kubernetes)."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.support.kustomize import (
    KustomizeError,
    Obj,
    build,
    by_key,
    config_map_hash,
    strategic_merge,
)

pytestmark = pytest.mark.unit
KUBECTL = shutil.which("kubectl")

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app}
    spec:
      containers:
        - name: app
          image: example/app:1.0
          env:
            - name: A
              value: "1"
            - name: FROM_MAP
              valueFrom:
                configMapKeyRef: {name: settings, key: a.txt}
          envFrom:
            - configMapRef: {name: settings}
        - name: sidecar
          image: registry.local:5000/sidecar
      volumes:
        - name: plain
          configMap: {name: settings}
        - name: both
          projected:
            sources:
              - configMap: {name: settings}
              - configMap: {name: fixed}
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def example(root: Path) -> Path:
    """An overlay using every supported feature; returns its folder."""
    return (
        write(
            root,
            {
                "base/kustomization.yaml": """\
                resources: [deployment.yaml]
                configMapGenerator:
                  - name: settings
                    files: [a.txt, renamed.txt=b.txt]
                  - name: fixed
                    files: [a.txt]
                    options:
                      disableNameSuffixHash: true
                      labels: {team: x}
                """,
                "base/deployment.yaml": DEPLOYMENT,
                "base/a.txt": "hello\n",
                "base/b.txt": "<html> & co\n",
                "component/kustomization.yaml": """\
                apiVersion: kustomize.config.k8s.io/v1alpha1
                kind: Component
                resources: [service.yaml]
                patches:
                  - path: patch.yaml
                """,
                "component/service.yaml": """\
                apiVersion: v1
                kind: Service
                metadata: {name: app}
                spec:
                  selector: {app: app}
                  ports: [{port: 80}]
                """,
                # a component's patch reaches the objects it is added to
                "component/patch.yaml": """\
                apiVersion: apps/v1
                kind: Deployment
                metadata: {name: app}
                spec:
                  template:
                    spec:
                      containers:
                        - name: app
                          env:
                            - name: A
                              value: "2"
                            - name: B
                              value: "3"
                """,
                "overlay/kustomization.yaml": """\
                namespace: prod
                resources: [../base]
                components: [../component]
                images:
                  - name: example/app
                    newName: registry.example.com/app
                    newTag: "2.0"
                  - name: registry.local:5000/sidecar
                    newTag: "1.1"
                patches:
                  - path: patch.yaml
                """,
                "overlay/patch.yaml": """\
                apiVersion: apps/v1
                kind: Deployment
                metadata: {name: app}
                spec:
                  replicas: 3
                  template:
                    spec:
                      volumes:
                        - name: plain
                          configMap: {defaultMode: 256}
                """,
            },
        )
        / "overlay"
    )


def kubectl_kustomize(folder: Path) -> dict[tuple[str, str, str], Obj]:
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, check=True
    ).stdout
    return by_key([doc for doc in yaml.safe_load_all(out) if doc])


def test_hash_suffix_is_kustomizes() -> None:
    # printed by kubectl v1.32.4 (kustomize v5.5.0) for these ConfigMaps
    hello = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a.txt": "hello\n"}}
    assert config_map_hash(hello) == "7bbhf79gm2"
    html = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"b": "<html> & co\n"}}
    assert config_map_hash(html) == "b4c4gf22gk"
    # the name does not count (kustomize 5 hashes an empty one); the content does
    assert config_map_hash({**hello, "metadata": {"name": "other"}}) == "7bbhf79gm2"
    assert config_map_hash({**hello, "data": {"a.txt": "hello"}}) != "7bbhf79gm2"


def test_every_feature(tmp_path: Path) -> None:
    objects = by_key(build(example(tmp_path)))
    assert {ns for _, ns, _ in objects} == {"prod"}  # component's Service included
    names = {name for kind, _, name in objects if kind == "ConfigMap"}
    settings = next(n for n in names if n.startswith("settings-"))
    assert names == {"fixed", settings} and len(settings) == len("settings-") + 10
    assert objects[("ConfigMap", "prod", "fixed")]["metadata"]["labels"] == {"team": "x"}
    data = objects[("ConfigMap", "prod", settings)]["data"]
    assert data == {"a.txt": "hello\n", "renamed.txt": "<html> & co\n"}

    deployment = objects[("Deployment", "prod", "app")]
    pod = deployment["spec"]["template"]["spec"]
    app, sidecar = pod["containers"]
    # every reference follows the hashed name
    assert app["env"][2]["valueFrom"]["configMapKeyRef"]["name"] == settings
    assert app["envFrom"][0]["configMapRef"]["name"] == settings
    assert pod["volumes"][0]["configMap"] == {"name": settings, "defaultMode": 256}
    assert [s["configMap"]["name"] for s in pod["volumes"][1]["projected"]["sources"]] == [
        settings,
        "fixed",
    ]
    # images
    assert app["image"] == "registry.example.com/app:2.0"
    assert sidecar["image"] == "registry.local:5000/sidecar:1.1"
    # patches: the overlay's and the component's
    assert deployment["spec"]["replicas"] == 3
    assert [(e["name"], e.get("value")) for e in app["env"]] == [
        ("A", "2"),
        ("B", "3"),
        ("FROM_MAP", None),
    ]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed: no reference to compare")
def test_same_objects_as_kubectl_kustomize(tmp_path: Path) -> None:
    # deploy/kubernetes's renders: tests/unit/test_kubernetes_static.py
    path = example(tmp_path)
    assert by_key(build(path)) == kubectl_kustomize(path)


def test_strategic_merge() -> None:
    original: Obj = {
        "keep": 1,
        "drop": 2,
        "containers": [
            {"name": "a", "image": "x", "args": ["1", "2"]},
            {"name": "c", "image": "z"},
        ],
        "tolerations": [{"key": "k1"}],
    }
    patch = {
        "drop": None,
        "containers": [{"name": "b", "image": "y"}, {"name": "a", "args": ["3"]}],
        "tolerations": [{"key": "k2"}],
    }
    assert strategic_merge(original, patch) == {
        "keep": 1,
        # kustomize's order (checked against kubectl): the patch's items, then the rest
        "containers": [
            {"name": "b", "image": "y"},
            {"name": "a", "image": "x", "args": ["3"]},  # args: replaced
            {"name": "c", "image": "z"},
        ],
        "tolerations": [{"key": "k2"}],  # no merge key: replaced whole
    }
    assert original["drop"] == 2, "the original is not modified"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"kustomization.yaml": "namePrefix: x-\n"}, "unsupported fields"),
        ({"kustomization.yaml": "resources: [../outside.yaml]\n"}, "is not in or below"),
        (
            {"kustomization.yaml": "configMapGenerator: [{name: c, literals: [a=b]}]\n"},
            "unsupported",
        ),
        (
            {
                "kustomization.yaml": "resources: [d.yaml]\npatches: [{path: p.yaml}]\n",
                "d.yaml": DEPLOYMENT,
                "p.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n"
                "spec: {$patch: replace}\n",
            },
            "$patch directives are not supported",
        ),
        (
            {
                "kustomization.yaml": "resources: [d.yaml]\npatches: [{path: p.yaml}]\n",
                "d.yaml": DEPLOYMENT,
                "p.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: other}\n",
            },
            "0 targets",
        ),
        (
            {
                "kustomization.yaml": "resources: [d.yaml, d2.yaml]\n",
                "d.yaml": DEPLOYMENT,
                "d2.yaml": DEPLOYMENT,
            },
            "defined twice",
        ),
        ({"kustomization.yaml": "kind: Component\n"}, "where a Kustomization belongs"),
    ],
)
def test_refuses_what_it_does_not_support(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    (tmp_path / "outside.yaml").write_text(DEPLOYMENT)
    folder = write(tmp_path / "k", files)
    with pytest.raises(KustomizeError, match=message.replace("$", r"\$")):
        build(folder)
