"""A small kustomize renderer for exactly the features deploy/kubernetes uses.

``kubectl kustomize`` is not on every machine that runs the tests, so the static tests
render the manifests with this instead (and compare it with ``kubectl kustomize``
where kubectl is installed). Supported, and nothing else (anything else is an error):

- ``resources``: YAML files (several documents each) and folders holding a kustomization
- ``components``: folders holding a ``kind: Component``, applied after ``resources``
- ``configMapGenerator``: ``name``, ``files`` (``path`` or ``key=path``), ``options``
  with ``disableNameSuffixHash`` and ``labels``; the name suffix is kustomize's hash, and
  references to the ConfigMap in pod templates (volumes, projected volumes, env) follow it
- ``namespace``: set on every object (all of ours are namespaced)
- ``images``: ``name`` with ``newName`` and/or ``newTag``, in containers' ``image``
- ``patches``: ``path`` to a strategic-merge patch of one object of ours, found by
  apiVersion, kind and name; the lists of MERGE_KEYS (containers, volumes, env, ...)
  merge item by item in kustomize's order, every other list is replaced (kustomize
  merges a few more, e.g. ports: no patch of ours touches them); ``$patch`` directives
  are refused

Like kustomize, a kustomization reads files only inside its own folder; folders of
other kustomizations may be anywhere.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KNOWN_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "configMapGenerator",
    "namespace",
    "images",
    "patches",
}
GENERATOR_FIELDS = {"name", "files", "options"}
GENERATOR_OPTIONS = {"disableNameSuffixHash", "labels"}
# strategic merge: the key that identifies an item of these lists (Kubernetes' own
# patchMergeKey); every other list is replaced whole
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}
POD_SPEC_PATHS = (("spec", "template", "spec"), ("spec", "jobTemplate", "spec", "template", "spec"))
HASH_PENDING = "_needs_hash"  # internal mark, removed before the output


class KustomizeError(ValueError):
    """A kustomization this renderer cannot (or kustomize would not) build."""


def build(folder: Path) -> list[Obj]:
    """The objects ``kubectl kustomize folder`` prints (in no particular order)."""
    objects = _build(folder.resolve(), component=False, inherited=[])
    for obj in objects:
        if obj.pop(HASH_PENDING, False):
            _add_hash_suffix(obj, objects)
    return objects


def by_key(objects: list[Obj]) -> dict[tuple[str, str, str], Obj]:
    """The objects by (kind, namespace, name), each only once."""
    out: dict[tuple[str, str, str], Obj] = {}
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        if key in out:
            raise KustomizeError(f"{key} is defined twice")
        out[key] = obj
    return out


def kustomization_file(folder: Path) -> Path:
    for name in KUSTOMIZATION_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise KustomizeError(f"{folder}: no kustomization.yaml")


def _build(folder: Path, component: bool, inherited: list[Obj]) -> list[Obj]:
    """The objects of the kustomization (or component) in ``folder``; a component adds
    its own to the ``inherited`` ones and its transformers see them all."""
    spec = yaml.safe_load(kustomization_file(folder).read_text()) or {}
    unknown = set(spec) - KNOWN_FIELDS
    if unknown:
        raise KustomizeError(f"{folder}: unsupported fields {sorted(unknown)}")
    kind = spec.get("kind", "Kustomization")
    if kind != ("Component" if component else "Kustomization"):
        expected = "Component" if component else "Kustomization"
        raise KustomizeError(f"{folder}: kind {kind} where a {expected} belongs")
    objects = list(inherited)
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            objects.extend(_build(path, component=False, inherited=[]))
        else:
            objects.extend(_load_documents(_inside(folder, entry)))
    for entry in spec.get("components", []):
        objects = _build((folder / entry).resolve(), component=True, inherited=objects)
    for generator in spec.get("configMapGenerator", []):
        objects.append(_config_map(folder, generator))
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise KustomizeError(f"{folder}: only `patches: - path: FILE` is supported")
        _apply_patch(objects, yaml.safe_load(_inside(folder, patch["path"]).read_text()))
    for image in spec.get("images", []):
        _set_image(objects, image)
    if "namespace" in spec:
        for obj in objects:
            obj["metadata"]["namespace"] = spec["namespace"]
    by_key(objects)  # no duplicates
    return objects


def _inside(folder: Path, entry: str) -> Path:
    """``entry`` of the kustomization in ``folder``: a file inside that folder only."""
    path = (folder / entry).resolve()
    if folder not in path.parents:
        raise KustomizeError(f"security; file '{path}' is not in or below '{folder}'")
    if not path.is_file():
        raise KustomizeError(f"{path}: no such file")
    return path


def _load_documents(path: Path) -> Iterator[Obj]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        if not isinstance(doc, dict) or not {"apiVersion", "kind", "metadata"} <= set(doc):
            raise KustomizeError(f"{path}: not a Kubernetes object: {doc!r:.80}")
        yield doc


def _config_map(folder: Path, generator: Obj) -> Obj:
    unknown = set(generator) - GENERATOR_FIELDS
    options = generator.get("options", {})
    unknown |= set(options) - GENERATOR_OPTIONS
    if unknown:
        raise KustomizeError(f"{folder}: configMapGenerator: unsupported {sorted(unknown)}")
    data: dict[str, str] = {}
    for entry in generator["files"]:
        key, _, source = entry.rpartition("=")
        path = _inside(folder, source)
        key = key or path.name
        if key in data:
            raise KustomizeError(f"{folder}: {generator['name']}: key {key} twice")
        data[key] = path.read_text()
    metadata: Obj = {"name": generator["name"]}
    if options.get("labels"):
        metadata["labels"] = dict(options["labels"])
    obj: Obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
    if not options.get("disableNameSuffixHash", False):
        obj[HASH_PENDING] = True
    return obj


def config_map_hash(obj: Obj) -> str:
    """kustomize's name suffix: sha256 of the JSON of kind, name and data (Go's encoding:
    sorted keys, no spaces, HTML characters escaped), its first 10 hex digits with
    0, 1, 3, a, e replaced so the suffix never reads as a number or a word. The name is
    always empty: kustomize 5's hasher looks ``metadata/name`` up as a single key, which
    no ConfigMap has (kubectl's kustomize v5.5.0 prints exactly these suffixes)."""
    encoded = json.dumps(
        {"data": obj.get("data", {}), "kind": obj["kind"], "name": ""},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    for char, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        encoded = encoded.replace(char, escaped)
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _add_hash_suffix(config_map: Obj, objects: list[Obj]) -> None:
    old = config_map["metadata"]["name"]
    new = f"{old}-{config_map_hash(config_map)}"
    config_map["metadata"]["name"] = new
    namespace = config_map["metadata"].get("namespace")
    for obj in objects:
        if obj["metadata"].get("namespace") != namespace:
            continue
        for ref in _config_map_refs(obj):
            if ref.get("name") == old:
                ref["name"] = new


def _config_map_refs(obj: Obj) -> Iterator[Obj]:
    """The ``{name: ...}`` mappings through which a pod template names a ConfigMap."""
    for pod in _pod_specs(obj):
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                yield volume["configMap"]
            for source in volume.get("projected", {}).get("sources", []):
                if "configMap" in source:
                    yield source["configMap"]
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("configMapKeyRef")
                if ref is not None:
                    yield ref
            for env_from in container.get("envFrom", []):
                if "configMapRef" in env_from:
                    yield env_from["configMapRef"]


def _pod_specs(obj: Obj) -> Iterator[Obj]:
    for path in POD_SPEC_PATHS:
        node: Any = obj
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            yield node


def _set_image(objects: list[Obj], image: Obj) -> None:
    if not set(image) <= {"name", "newName", "newTag"} or "name" not in image:
        raise KustomizeError(f"images: unsupported entry {image}")
    for obj in objects:
        for pod in _pod_specs(obj):
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                name, tag = _split_image(container["image"])
                if name != image["name"]:
                    continue
                name = image.get("newName", name)
                tag = str(image.get("newTag", tag)) if image.get("newTag", tag) else ""
                container["image"] = f"{name}:{tag}" if tag else name


def _split_image(image: str) -> tuple[str, str]:
    """(name, tag) of ``registry/name:tag`` (a digest is not supported)."""
    if "@" in image:
        raise KustomizeError(f"{image}: digests are not supported")
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:  # no tag; the colon was a registry's port
        return image, ""
    return name, tag


def _apply_patch(objects: list[Obj], patch: Obj) -> None:
    targets = [
        obj
        for obj in objects
        if (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
        == (patch["apiVersion"], patch["kind"], patch["metadata"]["name"])
    ]
    if len(targets) != 1:
        raise KustomizeError(
            f"patch {patch['kind']}/{patch['metadata']['name']}: {len(targets)} targets"
        )
    merged = strategic_merge(targets[0], patch)
    targets[0].clear()
    targets[0].update(merged)


def strategic_merge(original: Any, patch: Any, field: str = "") -> Any:
    """``patch`` over ``original``: mappings merge key by key (a null deletes), lists of
    MERGE_KEYS merge item by item on their key, any other value is replaced."""
    if isinstance(patch, dict):
        if any(str(key).startswith("$") for key in patch):
            raise KustomizeError(f"{field}: $patch directives are not supported")
        if not isinstance(original, dict):
            return copy.deepcopy(patch)
        out = copy.deepcopy(original)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = strategic_merge(original.get(key), value, key)
        return out
    if isinstance(patch, list) and field in MERGE_KEYS and isinstance(original, list):
        # kustomize's order: the patch's items (merged into the original's of the same
        # key), then the original's items the patch does not name
        key = MERGE_KEYS[field]
        olds = {old[key]: old for old in original}
        merged = [strategic_merge(olds.get(item[key]), item, field) for item in patch]
        named = {item[key] for item in patch}
        return merged + [copy.deepcopy(old) for old in original if old[key] not in named]
    return copy.deepcopy(patch)
