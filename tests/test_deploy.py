"""Offline checks of the deployment (`make deploy-check`): the Kubernetes manifests of deploy/, rendered
as kustomize would, pass kubernetes-validate in strict mode; docker-compose.yml passes
`docker-compose config -q`; every service has the same name everywhere; every setting is documented;
the Qdrant collection script does what the cluster needs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tools.kustomize import KustomizeError, merge, render
from tools.settings_doc import all_names, load_config, service_folders
from tools.stack import SPECS

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES_VERSION = "1.37.0"  # the newest schemas kubernetes-validate 1.37 ships
OVERLAYS = {"base": ROOT / "deploy" / "base", "production": ROOT / "deploy" / "overlays" / "production"}
AUTOSCALED = ("detector-service", "gender-service", "embedding-service")
DOCKER_COMPOSE = ROOT / ".venv" / "deploy" / "bin" / "docker-compose"
PREFIXES = ("GATEWAY_", "DETECTOR_", "GENDER_", "EMBEDDING_", "INDEX_")

Doc = dict[str, Any]


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def manifests(request: pytest.FixtureRequest) -> list[Doc]:
    return render(OVERLAYS[request.param])


@pytest.fixture(scope="module")
def compose() -> Doc:
    config: Doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return config


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def containers(doc: Doc) -> list[Doc]:
    spec = pod_spec(doc)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def image_name(reference: str) -> str:
    return reference.rsplit("/", 1)[-1].split(":")[0]


# --- validity ------------------------------------------------------------------------------------


def test_manifests_are_valid_kubernetes_in_strict_mode(manifests: list[Doc]) -> None:
    for doc in manifests:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")


def test_compose_file_passes_docker_compose_config() -> None:
    if not DOCKER_COMPOSE.exists():
        pytest.fail(f"{DOCKER_COMPOSE} is missing: `make install-test` installs docker-compose")
    result = subprocess.run(
        [str(DOCKER_COMPOSE), "-f", "docker-compose.yml", "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_renderer_agrees_with_kubectl_kustomize(overlay: str) -> None:
    output = subprocess.run(
        ["kubectl", "kustomize", str(OVERLAYS[overlay])],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    theirs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(output) if d}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in render(OVERLAYS[overlay])}
    assert ours == theirs


# --- one name per service ------------------------------------------------------------------------


def test_the_service_folders_are_the_stack() -> None:
    assert service_folders() == sorted(spec.name for spec in SPECS)


def test_every_service_has_one_name_everywhere(manifests: list[Doc], compose: Doc) -> None:
    for spec in SPECS:
        name = spec.name
        assert (ROOT / name / spec.package).is_dir(), f"{name}: package {spec.package}"
        assert f"EXPOSE {spec.port}" in (ROOT / name / "Dockerfile").read_text()
        deployment = find(manifests, "Deployment", name)
        assert deployment["metadata"]["labels"]["app"] == name
        assert deployment["spec"]["selector"]["matchLabels"] == {"app": name}
        assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == name
        main = pod_spec(deployment)["containers"][0]
        assert main["name"] == name and image_name(main["image"]) == name
        assert main["ports"][0]["containerPort"] == spec.port
        service = find(manifests, "Service", name)
        assert service["spec"]["selector"] == {"app": name}
        assert service["spec"]["ports"][0]["port"] == spec.port
        entry = compose["services"][name]
        assert image_name(entry["image"]) == name
        assert entry["build"]["dockerfile"] == f"{name}/Dockerfile"


# --- what each part needs --------------------------------------------------------------------------


def test_services_have_probes_resources_and_run_as_non_root(manifests: list[Doc]) -> None:
    workloads = [d for d in manifests if d["kind"] in ("Deployment", "StatefulSet", "Job")]
    assert len(workloads) == 8  # the five services, Redis, Qdrant, the ingest Job
    for doc in workloads:
        label = f"{doc['kind']}/{doc['metadata']['name']}"
        assert pod_spec(doc)["securityContext"]["runAsNonRoot"] is True, label
        for container in containers(doc):
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[part]), (label, container["name"], part)
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, label
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], label
    for spec in SPECS:
        main = pod_spec(find(manifests, "Deployment", spec.name))["containers"][0]
        assert main["readinessProbe"]["httpGet"]["path"] == "/readyz", spec.name
        assert main["livenessProbe"]["httpGet"]["path"] == "/healthz", spec.name


def test_model_services_autoscale_and_leave_the_count_to_the_autoscaler(manifests: list[Doc]) -> None:
    for name in AUTOSCALED:
        hpa = find(manifests, "HorizontalPodAutoscaler", name)
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        assert "replicas" not in find(manifests, "Deployment", name)["spec"]


def test_settings_come_from_a_config_map_and_the_api_key_from_a_secret(manifests: list[Doc]) -> None:
    config = find(manifests, "ConfigMap", "shopthelook-config")["data"]
    assert not [k for k in config if "KEY" in k or "PASSWORD" in k], "secrets do not belong in the ConfigMap"
    sources = pod_spec(find(manifests, "Deployment", "gateway"))["containers"][0]["envFrom"]
    assert {"secretRef": {"name": "shopthelook-secrets"}} in sources
    assert {"configMapRef": {"name": "shopthelook-config"}} in sources
    secrets = [d for d in manifests if d["kind"] == "Secret"]
    assert all("GATEWAY_API_KEY" in d["stringData"] for d in secrets)  # production: created out of band
    assert config["REDIS_URL"] == "redis://redis:6379/0"
    find(manifests, "Service", "redis")


def test_qdrant_is_a_replicated_sharded_cluster_with_volumes(manifests: list[Doc]) -> None:
    config = find(manifests, "ConfigMap", "shopthelook-config")["data"]
    qdrant = find(manifests, "StatefulSet", "qdrant")
    peers = qdrant["spec"]["replicas"]
    assert peers >= 3 and int(config["QDRANT_PEERS"]) == peers
    assert int(config["QDRANT_REPLICATION_FACTOR"]) == 2 and int(config["QDRANT_SHARDS"]) >= peers
    claim = qdrant["spec"]["volumeClaimTemplates"][0]
    mounts = pod_spec(qdrant)["containers"][0]["volumeMounts"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/qdrant/storage"} in mounts
    env = {e["name"]: e["value"] for e in pod_spec(qdrant)["containers"][0]["env"]}
    assert env["QDRANT__CLUSTER__ENABLED"] == "true"
    headless = find(manifests, "Service", qdrant["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert config["INDEX_QDRANT_URL"] == config["QDRANT_URL"] == "http://qdrant:6333"
    index = pod_spec(find(manifests, "Deployment", "index-service"))
    assert index["initContainers"][0]["command"] == ["python", "/scripts/ensure_collection.py"]
    script = find(manifests, "ConfigMap", "qdrant-collection")["data"]["ensure_collection.py"]
    assert script == (ROOT / "deploy" / "base" / "qdrant" / "ensure_collection.py").read_text()


def test_ingestion_job_and_ingress(manifests: list[Doc]) -> None:
    job = find(manifests, "Job", "ingest")
    ingest = pod_spec(job)["containers"][0]
    assert image_name(ingest["image"]) == "gateway" and ingest["command"][:3] == [
        "python",
        "-m",
        "gateway.ingest",
    ]
    backend = find(manifests, "Ingress", "gateway")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["name"] == "gateway"


def test_compose_waits_for_healthy_dependencies(compose: Doc) -> None:
    services = compose["services"]
    for name in ("gateway", "ingest"):
        assert all(c == {"condition": "service_healthy"} for c in services[name]["depends_on"].values()), name
    for spec in SPECS:
        assert "healthcheck" in services[spec.name], spec.name
    assert services["index-service"]["environment"]["INDEX_QDRANT_URL"] == "http://qdrant:6333"
    assert services["gateway"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert "qdrant-data:/qdrant/storage" in services["qdrant"]["volumes"]
    assert any(v.endswith(":/catalog:ro") for v in services["gateway"]["volumes"])
    assert any(v.endswith(":/catalog:ro") for v in services["ingest"]["volumes"])


# --- settings --------------------------------------------------------------------------------------


def test_every_setting_is_documented() -> None:
    documented = (ROOT / "deploy" / "settings.md").read_text()
    missing = [name for name in all_names() if f"`{name}`" not in documented]
    assert not missing, f"not in deploy/settings.md (run `make settings-doc`): {missing}"


def test_the_deployment_sets_only_settings_that_exist(manifests: list[Doc], compose: Doc) -> None:
    known = set(all_names())
    names = set(find(manifests, "ConfigMap", "shopthelook-config")["data"])
    names |= {k for d in manifests if d["kind"] == "Secret" for k in d["stringData"]}
    names |= {k for service in compose["services"].values() for k in service.get("environment", {})}
    unknown = sorted(n for n in names if n.startswith(PREFIXES) and n not in known)
    assert not unknown, f"no service reads {unknown}"


def test_gateway_reads_redis_url_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    assert load_config("gateway").Settings().redis_url == "redis://cache:6379/0"


# --- the renderer ----------------------------------------------------------------------------------


def test_strategic_merge_merges_named_lists_and_deletes_nulls() -> None:
    base = {"containers": [{"name": "a", "image": "x", "args": ["1"]}, {"name": "b"}], "keep": 1, "drop": 2}
    patch = {"containers": [{"name": "a", "args": ["2"]}, {"name": "c"}], "drop": None}
    assert merge(base, patch) == {
        "containers": [{"name": "a", "image": "x", "args": ["2"]}, {"name": "b"}, {"name": "c"}],
        "keep": 1,
    }


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(KustomizeError, match="commonLabels"):
        render(tmp_path)


# --- the Qdrant collection script, against a stand-in Qdrant -----------------------------------------


class FakeQdrant:
    def __init__(self, peers: int) -> None:
        self.peers = peers
        self.collections: dict[str, Doc] = {}
        self.indexes: set[str] = set()
        self.creations = 0


@pytest.fixture
def fake_qdrant() -> Iterator[tuple[str, FakeQdrant]]:
    state = FakeQdrant(peers=1)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/cluster":
                state.peers += 1  # peers join while the script waits
                self.reply(200, {"result": {"peers": {str(i): {} for i in range(state.peers)}}})
            elif self.path.removeprefix("/collections/") in state.collections:
                self.reply(200, {"result": {"status": "green"}})
            else:
                self.reply(404, {"status": {"error": "Not found"}})

        def do_PUT(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            name = self.path.removeprefix("/collections/")
            if name.endswith("/index"):
                state.indexes.add(body["field_name"])
            elif name in state.collections:
                self.reply(409, {"status": {"error": "exists"}})
                return
            else:
                state.collections[name] = body
                state.creations += 1
            self.reply(200, {"result": True})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def run_script(url: str, peers: int, instance_dim: int = 256) -> subprocess.CompletedProcess[str]:
    env = {
        "QDRANT_URL": url,
        "QDRANT_COLLECTION": "products",
        "QDRANT_SHARDS": "6",
        "QDRANT_REPLICATION_FACTOR": "2",
        "QDRANT_PEERS": str(peers),
        "QDRANT_WAIT_S": "30",
        "INDEX_VECTOR_DIM": "768",
        "INDEX_INSTANCE_DIM": str(instance_dim),
    }
    script = ROOT / "deploy" / "base" / "qdrant" / "ensure_collection.py"
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)


def test_the_collection_is_created_once_sharded_and_replicated(fake_qdrant: tuple[str, FakeQdrant]) -> None:
    url, state = fake_qdrant
    first = run_script(url, peers=3)
    assert first.returncode == 0, first.stderr
    assert state.peers >= 3, "waited for the peers"
    assert state.collections["products"] == {
        "vectors": {"": {"size": 768, "distance": "Cosine"}, "instance": {"size": 256, "distance": "Cosine"}},
        "sparse_vectors": {"keypoints": {"modifier": "idf"}},
        "shard_number": 6,
        "replication_factor": 2,
        "write_consistency_factor": 1,
    }
    assert state.indexes == {
        "product_id",
        "gender",
        "category",
        "article_type",
        "colour",
        "usage",
        "embedding_model",
        "keypoint_vocabulary",
    }
    again = run_script(url, peers=3)
    assert again.returncode == 0 and state.creations == 1
    assert "already there" in again.stderr


def test_without_instance_vectors_the_collection_has_its_look_vector_alone(
    fake_qdrant: tuple[str, FakeQdrant],
) -> None:
    url, state = fake_qdrant
    assert run_script(url, peers=1, instance_dim=0).returncode == 0
    assert state.collections["products"]["vectors"] == {"size": 768, "distance": "Cosine"}
