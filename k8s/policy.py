#!/usr/bin/env python3
"""settle's deployment policy, checked on rendered manifests (operations-notes §2 and §7.4).

Usage: policy.py --profile {base,dev,production} RENDERED.yaml

Every Deployment is checked for labels, its ServiceAccount, probes, security context, resources,
image tags, Secret references, rollout strategy and its PodDisruptionBudget, HorizontalPodAutoscaler
and NetworkPolicy. Containers that serve gRPC (a port named `grpc`) are also checked for native
gRPC probes on integer ports with the health service names settle uses, the preStop sleep and the
grace-period arithmetic, and their environment. The profile adds what differs between
environments (CPU limits, replica counts, spreading, PostgreSQL instances). Mesh annotations,
Services and CloudNativePG Clusters are checked where present.

A Deployment may opt out of the HPA rule with the annotations
`settle.dev/policy-exempt: hpa` and `settle.dev/policy-exempt-reason: <why>`.

Exit status: 0 when every rule holds, 1 with one line per violation, 2 on bad input.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Secrets that the manifests reference but never create; k8s/README.md says how to create them.
EXTERNAL_SECRETS = {"settle-api-keys"}
LIVENESS_SERVICE = "settle.liveness"
READINESS_SERVICE = ""
PRESTOP_RANGE = (5, 10)
GRACE_MARGIN_SECONDS = 5
MAX_REVISION_HISTORY = 5
PROFILES = ("base", "dev", "production")


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    checked: int = 0

    def check(self, ok: bool, rule: str, subject: str, message: str) -> bool:
        self.checked += 1
        if not ok:
            self.violations.append(f"[{rule}] {subject}: {message}")
        return ok


# === rendered objects ===


class Rendered:
    def __init__(self, docs: list[dict]):
        self.docs = [d for d in docs if isinstance(d, dict) and d.get("kind")]

    def of(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def named(self, kind: str, name: str) -> dict | None:
        return next((d for d in self.of(kind) if name_of(d) == name), None)


def name_of(obj: dict) -> str:
    return obj.get("metadata", {}).get("name", "?")


def selects(selector: dict | None, labels: dict) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) matches `labels`."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def grpc_port(container: dict) -> int | None:
    for port in container.get("ports") or []:
        if port.get("name") == "grpc":
            return port.get("containerPort")
    return None


def env_value(container: dict, name: str, rendered: Rendered) -> str | None:
    """The literal value of an env var, from `env` or a ConfigMap in `envFrom`."""
    for var in container.get("env") or []:
        if var.get("name") == name:
            if "value" in var:
                return str(var["value"])
            ref = (var.get("valueFrom") or {}).get("configMapKeyRef")
            if ref:
                cm = rendered.named("ConfigMap", ref["name"])
                return (cm or {}).get("data", {}).get(ref["key"])
            return None
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref:
            cm = rendered.named("ConfigMap", ref["name"])
            if cm and name in (cm.get("data") or {}):
                return str(cm["data"][name])
    return None


def envfrom_keys(container: dict, rendered: Rendered) -> set[str]:
    keys: set[str] = set()
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref:
            keys |= set(((rendered.named("ConfigMap", ref["name"]) or {}).get("data") or {}).keys())
    return keys


def image_pinned(image: str) -> bool:
    """An explicit tag other than latest, or a digest."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.split(":", 1)[1] != "latest"


def parse_seconds(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# === per-Deployment rules ===


def check_deployment(dep: dict, rendered: Rendered, profile: str, r: Report) -> None:
    name = name_of(dep)
    subject = f"Deployment/{name}"
    meta = dep.get("metadata", {})
    spec = dep.get("spec", {})
    template = spec.get("template", {})
    pod_labels = template.get("metadata", {}).get("labels") or {}
    pod_annotations = template.get("metadata", {}).get("annotations") or {}
    pod = template.get("spec", {})
    containers = pod.get("containers") or []
    init_containers = pod.get("initContainers") or []
    all_containers = init_containers + containers

    # 1. Labels: app.kubernetes.io/name is the only selector key.
    for key in ("app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/component"):
        r.check(key in (meta.get("labels") or {}), "labels", subject, f"metadata.labels lacks {key}")
        r.check(key in pod_labels, "labels", subject, f"pod template labels lack {key}")
    r.check(
        pod_labels.get("app.kubernetes.io/part-of") == "settle",
        "labels",
        subject,
        "pod template label app.kubernetes.io/part-of must be settle",
    )
    selector = spec.get("selector") or {}
    match_labels = selector.get("matchLabels") or {}
    r.check(
        set(match_labels) == {"app.kubernetes.io/name"} and not selector.get("matchExpressions"),
        "labels",
        subject,
        f"selector must be exactly app.kubernetes.io/name, got {sorted(match_labels)}",
    )

    # 2. ServiceAccount per service, no API token.
    sa_name = pod.get("serviceAccountName")
    if r.check(bool(sa_name) and sa_name != "default", "serviceaccount", subject, "needs its own serviceAccountName"):
        sa = rendered.named("ServiceAccount", sa_name)
        if r.check(sa is not None, "serviceaccount", subject, f"ServiceAccount {sa_name} is not rendered"):
            r.check(
                sa.get("automountServiceAccountToken") is False,
                "serviceaccount",
                f"ServiceAccount/{sa_name}",
                "automountServiceAccountToken must be false",
            )
    r.check(
        pod.get("automountServiceAccountToken") is False,
        "serviceaccount",
        subject,
        "pod automountServiceAccountToken must be false",
    )

    # 4. Security context.
    psc = pod.get("securityContext") or {}
    r.check(psc.get("runAsNonRoot") is True, "security", subject, "pod securityContext.runAsNonRoot must be true")
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        value = psc.get(key)
        r.check(
            isinstance(value, int) and not isinstance(value, bool) and value > 0,
            "security",
            subject,
            f"pod securityContext.{key} must be a non-zero number",
        )
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for c in all_containers:
        csub = f"{subject} container {c.get('name')}"
        sc = c.get("securityContext") or {}
        r.check(sc.get("allowPrivilegeEscalation") is False, "security", csub, "allowPrivilegeEscalation must be false")
        r.check(sc.get("privileged") is False, "security", csub, "privileged must be false")
        r.check(sc.get("readOnlyRootFilesystem") is True, "security", csub, "readOnlyRootFilesystem must be true")
        drops = (sc.get("capabilities") or {}).get("drop") or []
        r.check("ALL" in drops, "security", csub, "capabilities.drop must include ALL")
        r.check(
            not (sc.get("capabilities") or {}).get("add"),
            "security",
            csub,
            "capabilities.add must be empty",
        )
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        r.check(seccomp == "RuntimeDefault", "security", csub, "seccompProfile must be RuntimeDefault")
        tmp = next((m for m in c.get("volumeMounts") or [] if m.get("mountPath") == "/tmp"), None)
        r.check(
            tmp is not None and "emptyDir" in volumes.get(tmp["name"], {}),
            "security",
            csub,
            "read-only root filesystem needs an emptyDir mounted at /tmp",
        )

    # 5. Resources.
    server = grpc_port_of_any(containers) is not None
    for c in all_containers:
        csub = f"{subject} container {c.get('name')}"
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        r.check("cpu" in requests, "resources", csub, "needs a CPU request")
        r.check("memory" in requests, "resources", csub, "needs a memory request")
        r.check("memory" in limits, "resources", csub, "needs a memory limit")
        if server and profile == "dev":
            r.check("cpu" in limits, "resources", csub, "dev profile: needs a CPU limit")
        if server and profile == "production":
            r.check(
                "cpu" not in limits,
                "resources",
                csub,
                "production profile: no CPU limit (throttling shows up as p99 latency)",
            )

    # Images: explicit tag or digest, never latest.
    for c in all_containers:
        image = c.get("image", "")
        r.check(
            image_pinned(image),
            "image",
            f"{subject} container {c.get('name')}",
            f"image {image!r} needs a pinned tag or digest (not latest, not untagged)",
        )

    # Probes: every long-running container has liveness and readiness.
    for c in containers:
        csub = f"{subject} container {c.get('name')}"
        r.check("livenessProbe" in c, "probes", csub, "needs a livenessProbe")
        r.check("readinessProbe" in c, "probes", csub, "needs a readinessProbe")

    # gRPC servers: 3. probes, 6. shutdown, 7. env.
    for c in containers:
        port = grpc_port(c)
        if port is None:
            continue
        csub = f"{subject} container {c.get('name')}"
        expected = {
            "startupProbe": LIVENESS_SERVICE,
            "livenessProbe": LIVENESS_SERVICE,
            "readinessProbe": READINESS_SERVICE,
        }
        for probe_name, service in expected.items():
            probe = c.get(probe_name)
            if not r.check(probe is not None, "probes", csub, f"needs a {probe_name}"):
                continue
            grpc = probe.get("grpc")
            if not r.check(grpc is not None, "probes", csub, f"{probe_name} must be a native grpc: probe"):
                continue
            r.check(
                isinstance(grpc.get("port"), int) and not isinstance(grpc.get("port"), bool),
                "probes",
                csub,
                f"{probe_name}.grpc.port must be an integer (a named port is rejected), got {grpc.get('port')!r}",
            )
            r.check(
                grpc.get("port") == port,
                "probes",
                csub,
                f"{probe_name}.grpc.port {grpc.get('port')!r} is not the grpc port {port}",
            )
            r.check(
                "service" in grpc and grpc["service"] == service,
                "probes",
                csub,
                f"{probe_name}.grpc.service must be {service!r}, got {grpc.get('service', '<unset>')!r}",
            )

        pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds")
        ok = r.check(
            isinstance(pre_stop, int) and PRESTOP_RANGE[0] <= pre_stop <= PRESTOP_RANGE[1],
            "shutdown",
            csub,
            f"lifecycle.preStop.sleep.seconds must be {PRESTOP_RANGE[0]}-{PRESTOP_RANGE[1]}, got {pre_stop!r}",
        )
        drain = parse_seconds(env_value(c, "SETTLE_SHUTDOWN_GRACE_SECONDS", rendered))
        ok &= r.check(drain is not None, "shutdown", csub, "SETTLE_SHUTDOWN_GRACE_SECONDS must be set to a number")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if ok:
            r.check(
                grace >= pre_stop + drain + GRACE_MARGIN_SECONDS,
                "shutdown",
                subject,
                f"terminationGracePeriodSeconds {grace} < preStop {pre_stop} + drain {drain} "
                f"+ margin {GRACE_MARGIN_SECONDS}",
            )

        check_server_env(c, csub, name, rendered, r)

    # Secret references resolve: rendered Secrets, CNPG app Secrets, or documented external ones.
    clusters = {name_of(cl): cl for cl in rendered.of("Cluster")}
    cnpg_secrets = {f"{n}-app" for n in clusters} | {
        f"{n}-superuser" for n, cl in clusters.items() if (cl.get("spec") or {}).get("enableSuperuserAccess")
    }
    known = {name_of(s) for s in rendered.of("Secret")} | cnpg_secrets | EXTERNAL_SECRETS
    for c in all_containers:
        for secret in secret_refs(c):
            r.check(
                secret in known,
                "secrets",
                f"{subject} container {c.get('name')}",
                f"Secret {secret!r} is neither rendered, nor <cluster>-app of a rendered CNPG Cluster "
                f"({', '.join(sorted(clusters)) or 'none'}), nor documented as external",
            )
    for v in pod.get("volumes") or []:
        secret = (v.get("secret") or {}).get("secretName")
        if secret:
            r.check(secret in known, "secrets", subject, f"volume Secret {secret!r} does not resolve")

    # 8. Rollout.
    strategy = spec.get("strategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    r.check(strategy.get("type", "RollingUpdate") == "RollingUpdate", "rollout", subject, "strategy must be RollingUpdate")
    r.check(rolling.get("maxUnavailable") in (0, "0%"), "rollout", subject, "rollingUpdate.maxUnavailable must be 0")
    r.check(rolling.get("maxSurge") not in (None, 0, "0%"), "rollout", subject, "rollingUpdate.maxSurge must be set, > 0")
    r.check(
        isinstance(spec.get("revisionHistoryLimit"), int) and spec["revisionHistoryLimit"] <= MAX_REVISION_HISTORY,
        "rollout",
        subject,
        f"revisionHistoryLimit must be set, <= {MAX_REVISION_HISTORY}",
    )
    if server and profile == "production":
        keys = {t.get("topologyKey") for t in pod.get("topologySpreadConstraints") or []}
        r.check(
            {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys,
            "rollout",
            subject,
            "production profile: topologySpreadConstraints over kubernetes.io/hostname and topology.kubernetes.io/zone",
        )

    # PDB, HPA and NetworkPolicy for every Deployment.
    pdbs = [p for p in rendered.of("PodDisruptionBudget") if selects(p["spec"].get("selector"), pod_labels)]
    if r.check(len(pdbs) >= 1, "companions", subject, "no PodDisruptionBudget selects its pods"):
        for p in pdbs:
            r.check(
                p["spec"].get("maxUnavailable") == 1 and "minAvailable" not in p["spec"],
                "companions",
                f"PodDisruptionBudget/{name_of(p)}",
                "use maxUnavailable: 1 (minAvailable blocks node drains at one replica)",
            )
    hpas = [
        h
        for h in rendered.of("HorizontalPodAutoscaler")
        if (h["spec"].get("scaleTargetRef") or {}).get("kind") == "Deployment"
        and h["spec"]["scaleTargetRef"].get("name") == name
    ]
    annotations = meta.get("annotations") or {}
    exempt = "hpa" in (annotations.get("settle.dev/policy-exempt") or "").split(",")
    if exempt:
        r.check(
            bool(annotations.get("settle.dev/policy-exempt-reason")),
            "companions",
            subject,
            "settle.dev/policy-exempt needs settle.dev/policy-exempt-reason",
        )
    elif r.check(len(hpas) == 1, "companions", subject, f"needs exactly one HorizontalPodAutoscaler, found {len(hpas)}"):
        hpa = hpas[0]
        r.check(
            "replicas" not in spec,
            "companions",
            subject,
            "spec.replicas must be left to the HorizontalPodAutoscaler (apply would reset it)",
        )
        minimum = hpa["spec"].get("minReplicas", 1)
        if profile == "production":
            r.check(minimum >= 2, "companions", f"HorizontalPodAutoscaler/{name_of(hpa)}", "production: minReplicas >= 2")
        if profile == "dev":
            r.check(
                minimum == 1 and hpa["spec"].get("maxReplicas") == 1,
                "companions",
                f"HorizontalPodAutoscaler/{name_of(hpa)}",
                "dev profile: exactly one replica (minReplicas = maxReplicas = 1)",
            )
    own_policies = [
        n
        for n in rendered.of("NetworkPolicy")
        if (n["spec"].get("podSelector") or {}) != {} and selects(n["spec"].get("podSelector"), pod_labels)
    ]
    r.check(
        any({"Ingress", "Egress"} <= set(n["spec"].get("policyTypes") or []) for n in own_policies),
        "companions",
        subject,
        "no NetworkPolicy of its own (Ingress and Egress) selects its pods",
    )

    check_mesh_annotations(subject, pod_annotations, pod_labels, r)


def grpc_port_of_any(containers: list[dict]) -> int | None:
    return next((p for p in (grpc_port(c) for c in containers) if p is not None), None)


def secret_refs(container: dict) -> list[str]:
    names = []
    for var in container.get("env") or []:
        ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            names.append(ref["name"])
    for source in container.get("envFrom") or []:
        if source.get("secretRef"):
            names.append(source["secretRef"]["name"])
    return names


def check_server_env(c: dict, csub: str, deployment: str, rendered: Rendered, r: Report) -> None:
    env = c.get("env") or []
    by_name = {v["name"]: v for v in env}

    db = (by_name.get("DATABASE_URL") or {}).get("valueFrom", {}).get("secretKeyRef")
    if r.check(db is not None, "env", csub, "DATABASE_URL must come from a secretKeyRef"):
        wanted = f"{deployment}-db-app"
        r.check(
            db["name"] == wanted and db.get("key") == "uri",
            "env",
            csub,
            f"DATABASE_URL must be secretKeyRef {{name: {wanted}, key: uri}} (its own CNPG Cluster), "
            f"got {{name: {db['name']}, key: {db.get('key')}}}",
        )
        r.check(
            rendered.named("Cluster", f"{deployment}-db") is not None,
            "env",
            csub,
            f"CNPG Cluster {deployment}-db (owner of {wanted}) is not rendered",
        )
    instance = (by_name.get("SETTLE_INSTANCE_ID") or {}).get("valueFrom", {}).get("fieldRef", {})
    r.check(
        instance.get("fieldPath") == "metadata.name",
        "env",
        csub,
        "SETTLE_INSTANCE_ID must come from the pod name (fieldRef metadata.name)",
    )
    r.check("OTEL_SERVICE_NAME" in by_name, "env", csub, "OTEL_SERVICE_NAME must be set")
    for key in ("SETTLE_API_KEYS", "SETTLE_INTERNAL_KEY"):
        ref = (by_name.get(key) or {}).get("valueFrom", {}).get("secretKeyRef")
        r.check(ref is not None, "env", csub, f"{key} must come from a secretKeyRef")
    # $(VAR) only expands variables defined before it (or by envFrom); otherwise it stays literal.
    defined = envfrom_keys(c, rendered)
    for var in env:
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(var.get("value", ""))):
            r.check(
                ref in defined,
                "env",
                csub,
                f"{var['name']} refers to $({ref}), which is not defined earlier in env or envFrom",
            )
        defined.add(var["name"])


def check_mesh_annotations(subject: str, annotations: dict, labels: dict, r: Report) -> None:
    if annotations.get("linkerd.io/inject") == "enabled":
        r.check(
            annotations.get("config.beta.linkerd.io/proxy-enable-native-sidecar") == "true",
            "mesh",
            subject,
            "Linkerd: enable the native sidecar (config.beta.linkerd.io/proxy-enable-native-sidecar)",
        )
        r.check(
            "config.alpha.linkerd.io/proxy-wait-before-exit-seconds" not in annotations,
            "mesh",
            subject,
            "Linkerd: proxy-wait-before-exit-seconds must not be combined with native sidecars",
        )
    if labels.get("sidecar.istio.io/inject") == "true" or annotations.get("sidecar.istio.io/inject") == "true":
        config = yaml.safe_load(annotations.get("proxy.istio.io/config") or "{}") or {}
        r.check(
            annotations.get("sidecar.istio.io/nativeSidecar") == "true"
            or config.get("holdApplicationUntilProxyStarts") is True,
            "mesh",
            subject,
            "Istio: use native sidecars or holdApplicationUntilProxyStarts",
        )


# === other objects ===


def check_services(rendered: Rendered, r: Report) -> None:
    for dep in rendered.of("Deployment"):
        pod = dep["spec"]["template"]
        port = grpc_port_of_any(pod["spec"].get("containers") or [])
        if port is None:
            continue
        labels = pod.get("metadata", {}).get("labels") or {}
        services = [
            s
            for s in rendered.of("Service")
            if s["spec"].get("selector") and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
        ]
        subject = f"Deployment/{name_of(dep)}"
        if not r.check(bool(services), "service", subject, "no Service selects its pods"):
            continue
        for s in services:
            grpc = [p for p in s["spec"].get("ports") or [] if p.get("name") == "grpc"]
            r.check(
                bool(grpc) and all(p.get("appProtocol") == "grpc" for p in grpc),
                "service",
                f"Service/{name_of(s)}",
                "needs a port named grpc with appProtocol: grpc",
            )


def check_namespace_policies(rendered: Rendered, r: Report) -> None:
    default_deny = [
        n
        for n in rendered.of("NetworkPolicy")
        if n["spec"].get("podSelector") == {}
        and {"Ingress", "Egress"} <= set(n["spec"].get("policyTypes") or [])
        and not n["spec"].get("ingress")
        and not n["spec"].get("egress")
    ]
    r.check(bool(default_deny), "companions", "namespace", "no default-deny NetworkPolicy (ingress and egress)")
    dns = [
        n
        for n in rendered.of("NetworkPolicy")
        if n["spec"].get("podSelector") == {}
        and any(p.get("port") == 53 for rule in n["spec"].get("egress") or [] for p in rule.get("ports") or [])
    ]
    r.check(bool(dns), "companions", "namespace", "no NetworkPolicy lets every pod reach DNS on port 53")


def check_clusters(rendered: Rendered, profile: str, r: Report) -> None:
    meshed = any(
        (d["spec"]["template"].get("metadata", {}).get("annotations") or {}).get("linkerd.io/inject") == "enabled"
        or (d["spec"]["template"].get("metadata", {}).get("labels") or {}).get("sidecar.istio.io/inject") == "true"
        for d in rendered.of("Deployment")
    )
    for cl in rendered.of("Cluster"):
        subject = f"Cluster/{name_of(cl)}"
        spec = cl.get("spec") or {}
        initdb = (spec.get("bootstrap") or {}).get("initdb") or {}
        r.check(initdb.get("dataChecksums") is True, "cnpg", subject, "bootstrap.initdb.dataChecksums must be true")
        r.check(spec.get("enableSuperuserAccess") is not True, "cnpg", subject, "no superuser Secret for apps")
        instances = spec.get("instances")
        if profile == "dev":
            r.check(instances == 1, "cnpg", subject, f"dev profile: 1 instance, got {instances}")
        if profile == "production":
            r.check(
                isinstance(instances, int) and instances >= 3,
                "cnpg",
                subject,
                f"production profile: >= 3 instances, got {instances}",
            )
            sync = (spec.get("postgresql") or {}).get("synchronous") or {}
            r.check(
                sync.get("number", 0) >= 1,
                "cnpg",
                subject,
                "production profile: postgresql.synchronous with number >= 1",
            )
        if meshed:
            inherited = spec.get("inheritedMetadata") or {}
            out = (inherited.get("annotations") or {}).get("linkerd.io/inject") == "disabled" or (
                inherited.get("labels") or {}
            ).get("sidecar.istio.io/inject") == "false"
            r.check(out, "mesh", subject, "meshed build: keep instances out of the mesh via inheritedMetadata")


def check_mesh_routes(rendered: Rendered, r: Report) -> None:
    for vs in rendered.of("VirtualService"):
        for route in vs["spec"].get("http") or []:
            retries = route.get("retries")
            r.check(
                retries is not None and retries.get("attempts", 99) <= 1,
                "mesh",
                f"VirtualService/{name_of(vs)} route {route.get('name', '?')}",
                "set retries.attempts explicitly (0 or 1): Envoy retries by default and settle's clients retry",
            )
    retrying = [
        f"{d['kind']}/{name_of(d)}"
        for d in rendered.of("Service") + rendered.of("GRPCRoute") + rendered.of("HTTPRoute")
        if any(k.startswith("retry.linkerd.io/") for k in (d.get("metadata", {}).get("annotations") or {}))
    ]
    r.check(not retrying, "mesh", ", ".join(retrying), "no Linkerd retries: settle's clients already retry")


def check_images_everywhere(rendered: Rendered, r: Report) -> None:
    """Pinned images in workloads other than Deployments (checked above), should any appear."""
    for obj in rendered.docs:
        spec = obj.get("spec") or {}
        if obj["kind"] == "Deployment" or not isinstance(spec, dict):
            continue
        template = spec.get("template") or (spec.get("jobTemplate") or {}).get("spec", {}).get("template") or {}
        pod = template.get("spec") if isinstance(template, dict) else None
        if not isinstance(pod, dict):
            continue
        for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            image = c.get("image", "")
            r.check(
                image_pinned(image),
                "image",
                f"{obj['kind']}/{name_of(obj)} container {c.get('name')}",
                f"image {image!r} needs a pinned tag or digest",
            )


def run(rendered: Rendered, profile: str) -> Report:
    r = Report()
    deployments = rendered.of("Deployment")
    r.check(bool(deployments), "input", "render", "no Deployment found")
    for dep in deployments:
        check_deployment(dep, rendered, profile, r)
    check_services(rendered, r)
    check_namespace_policies(rendered, r)
    check_clusters(rendered, profile, r)
    check_mesh_routes(rendered, r)
    check_images_everywhere(rendered, r)
    return r


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, required=True)
    parser.add_argument("rendered", type=Path)
    args = parser.parse_args(argv)
    try:
        docs = list(yaml.safe_load_all(args.rendered.read_text()))
    except (OSError, yaml.YAMLError) as error:
        print(f"policy: cannot read {args.rendered}: {error}", file=sys.stderr)
        return 2
    rendered = Rendered(docs)
    report = run(rendered, args.profile)
    deployments = ", ".join(name_of(d) for d in rendered.of("Deployment"))
    if report.violations:
        for line in report.violations:
            print(f"POLICY VIOLATION {line}")
        print(
            f"policy: {args.rendered} ({args.profile}): {len(report.violations)} violation(s) "
            f"in {report.checked} checks"
        )
        return 1
    print(f"policy: {args.rendered} ({args.profile}): {report.checked} checks passed [{deployments}]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
