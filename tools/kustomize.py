"""A small kustomize: renders deploy/ (a base and its overlays) without the kustomize binary, for the
offline checks of `make deploy-check`. It implements only what deploy/ uses and refuses anything else,
so a manifest never silently renders differently here than with `kubectl apply -k`:

- ``resources`` (YAML files and kustomization folders), ``namespace``, ``labels`` (metadata only),
  ``images`` (newName, newTag), ``replicas``, ``configMapGenerator`` (files, without name hash),
- ``patches`` given by ``path``: strategic merge patches (``$patch: delete`` of a whole object,
  ``null`` deletes a field, lists of named things merge by their key, other lists are replaced).

    python -m tools.kustomize deploy/overlays/production > rendered.yaml
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]
SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "images",
    "replicas",
    "patches",
    "configMapGenerator",
}
# Lists that strategic merge patches merge item by item (Kubernetes' patchMergeKey), by field name.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}


class KustomizeError(Exception):
    pass


def render(folder: Path) -> list[Doc]:
    """Every object the kustomization in ``folder`` produces, transformed in kustomize's order."""
    spec = _load_kustomization(folder)
    docs: list[Doc] = []
    for entry in spec.get("resources", []):
        target = folder / entry
        docs += render(target) if target.is_dir() else _load_docs(target)
    docs += [_config_map(folder, generator) for generator in spec.get("configMapGenerator", [])]
    for patch in spec.get("patches", []):
        docs = _apply_patch_file(docs, folder, patch)
    if "namespace" in spec:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = spec["namespace"]
    for entry in spec.get("labels", []):
        _apply_labels(docs, entry)
    for image in spec.get("images", []):
        _apply_image(docs, image)
    for replicas in spec.get("replicas", []):
        _apply_replicas(docs, replicas)
    return docs


def dump(docs: list[Doc]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=True, default_flow_style=False)


def _load_kustomization(folder: Path) -> Doc:
    path = folder / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{folder} has no kustomization.yaml")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{path}: {sorted(unknown)} not supported by tools/kustomize.py")
    return dict(spec)


def _load_docs(path: Path) -> list[Doc]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "name" not in doc.get("metadata", {}):
            raise KustomizeError(f"{path}: every document needs kind and metadata.name")
    return docs


def _config_map(folder: Path, generator: Doc) -> Doc:
    if set(generator) - {"name", "files", "literals", "options"}:
        raise KustomizeError(f"configMapGenerator {generator.get('name')}: unsupported fields")
    options = generator.get("options", {})
    if options != {"disableNameSuffixHash": True}:
        raise KustomizeError("configMapGenerator needs options.disableNameSuffixHash: true (no hashes here)")
    data: dict[str, str] = {}
    for entry in generator.get("files", []):
        key, _, relative = entry.rpartition("=") if "=" in entry else (None, "", entry)
        path = folder / relative
        data[key or path.name] = path.read_text()
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data}


def _apply_patch_file(docs: list[Doc], folder: Path, entry: Doc) -> list[Doc]:
    if set(entry) != {"path"}:
        raise KustomizeError(f"patches: only `path:` entries are supported, not {sorted(entry)}")
    for patch in _load_docs(folder / entry["path"]):
        docs = _apply_patch(docs, patch)
    return docs


def _apply_patch(docs: list[Doc], patch: Doc) -> list[Doc]:
    matches = [d for d in docs if _same_object(d, patch)]
    if len(matches) != 1:
        raise KustomizeError(
            f"patch for {patch['kind']}/{patch['metadata']['name']} matches {len(matches)} objects"
        )
    target = matches[0]
    if patch.get("$patch") == "delete":
        return [d for d in docs if d is not target]
    merged = merge(target, patch)
    return [merged if d is target else d for d in docs]


def _same_object(doc: Doc, patch: Doc) -> bool:
    return bool(
        doc["kind"] == patch["kind"]
        and doc["metadata"]["name"] == patch["metadata"]["name"]
        and doc["apiVersion"].split("/")[0] == patch["apiVersion"].split("/")[0]
    )


def merge(base: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge of ``patch`` into ``base`` (neither is changed)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        result = copy.deepcopy(base)
        for key, value in patch.items():
            if key == "$patch":
                continue
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = merge(result[key], value, key)
            else:
                result[key] = copy.deepcopy(value)
        return result
    if isinstance(base, list) and isinstance(patch, list):
        key = _merge_key(field, base + patch)
        if key is None:
            return copy.deepcopy(patch)
        items = copy.deepcopy(base)
        for item in patch:
            same = [i for i, old in enumerate(items) if old.get(key) == item.get(key)]
            if same:
                items[same[0]] = merge(items[same[0]], item)
            else:
                items.append(copy.deepcopy(item))
        return items
    return copy.deepcopy(patch)


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":  # a container's ports merge by containerPort, a Service's by port
        dicts = [i for i in items if isinstance(i, dict)]
        return "containerPort" if dicts and all("containerPort" in i for i in dicts) else "port"
    return MERGE_KEYS.get(field)


def _apply_labels(docs: list[Doc], entry: Doc) -> None:
    if set(entry) - {"pairs", "includeSelectors"} or entry.get("includeSelectors"):
        raise KustomizeError("labels: only `pairs` (metadata labels, no selectors) are supported")
    for doc in docs:
        doc["metadata"].setdefault("labels", {}).update(entry["pairs"])


def _apply_image(docs: list[Doc], image: Doc) -> None:
    if set(image) - {"name", "newName", "newTag"}:
        raise KustomizeError(f"images: unsupported fields in {image}")
    for doc in docs:
        for container in _containers(doc):
            name, tag = _split_image(container["image"])
            if name == image["name"]:
                new_tag = image.get("newTag", tag)
                container["image"] = image.get("newName", name) + (f":{new_tag}" if new_tag else "")


def _split_image(reference: str) -> tuple[str, str | None]:
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:  # no tag, or the colon was a registry port
        return reference, None
    return name, tag


def _containers(doc: Doc) -> list[Doc]:
    if doc["kind"] not in WORKLOAD_KINDS:
        return []
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    pod = spec if doc["kind"] == "Pod" else spec.get("template", {}).get("spec", {})
    return list(pod.get("initContainers", [])) + list(pod.get("containers", []))


def _apply_replicas(docs: list[Doc], entry: Doc) -> None:
    found = [
        d
        for d in docs
        if d["kind"] in {"Deployment", "StatefulSet"} and d["metadata"]["name"] == entry["name"]
    ]
    if not found:
        raise KustomizeError(f"replicas: no Deployment or StatefulSet {entry['name']}")
    for doc in found:
        doc["spec"]["replicas"] = int(entry["count"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="a folder with a kustomization.yaml")
    args = parser.parse_args(argv)
    sys.stdout.write(dump(render(args.folder)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
