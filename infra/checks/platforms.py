"""Cloud Run, ECS and Kubernetes."""

import re

from base import DIRECT_ONLY, SECRET_VARS, STATIC_AWS_KEYS


class PlatformChecks:
    def cloud_run(self):
        path = self.infra / "cloudrun/service.yaml"
        where = self.rel(path)
        self.scan_tokens(path)
        doc = self.load(path)
        if not isinstance(doc, dict):
            return
        self.expect(doc.get("apiVersion") == "serving.knative.dev/v1"
                    and doc.get("kind") == "Service", where,
                    "expected apiVersion serving.knative.dev/v1, kind Service")
        template = (doc.get("spec") or {}).get("template") or {}
        notes = (template.get("metadata") or {}).get("annotations") or {}
        spec = template.get("spec") or {}
        self.expect(notes.get("run.googleapis.com/cpu-throttling") == "false", where,
                    "run.googleapis.com/cpu-throttling must be \"false\" (CPU always allocated)")
        self.expect(int(notes.get("autoscaling.knative.dev/minScale", 0)) >= 1, where,
                    "autoscaling.knative.dev/minScale must be at least 1")
        self.expect(spec.get("timeoutSeconds") == 3600, where,
                    "timeoutSeconds must be 3600: every session is one request")
        containers = spec.get("containers") or []
        if not self.expect(len(containers) >= 1, where, "no container"):
            return
        c = containers[0]
        here = f"{where}: containers[0]"
        self.expect(self.program_of(c.get("image")) == "gateway", here,
                    "the image is not postern-gateway")
        ports = c.get("ports") or [{}]
        self.expect(ports[0].get("name") == "h2c", here,
                    "the port must be named h2c (HTTP/2 end to end)")
        port = ports[0].get("containerPort")
        env = {e.get("name"): e for e in c.get("env") or []}
        for name in env:
            self.check_var(f"{here}.env", name, "gateway")
        value = lambda name: (env.get(name) or {}).get("value")  # noqa: E731
        self.expect(self.port_of(value("POSTERN_LISTEN_ADDR")) in (None, port), here,
                    f"POSTERN_LISTEN_ADDR {value('POSTERN_LISTEN_ADDR')} is not the "
                    f"container port {port}")
        self.expect(value("POSTERN_TLS_DISABLED") == "true", here,
                    "POSTERN_TLS_DISABLED must be true: Cloud Run terminates TLS")
        self.expect(value("POSTERN_PEER_TRANSPORT") == "relay", here,
                    "POSTERN_PEER_TRANSPORT must be relay: instances cannot dial each other")
        for name in DIRECT_ONLY & set(env):
            self.fail(here, f"{name} configures the direct peer port; the gateway refuses it "
                      "with relay")
        grace = value("POSTERN_DRAIN_GRACE_MS")
        self.expect(grace is not None and int(grace) <= 8000, here, "POSTERN_DRAIN_GRACE_MS "
                    "must be set, at most 8000: Cloud Run kills an instance 10 s after SIGTERM")
        for name in SECRET_VARS | {"POSTERN_POLICY_STORE"}:
            self.expect("secretKeyRef" in ((env.get(name) or {}).get("valueFrom") or {}),
                        here, f"{name} must come from Secret Manager (valueFrom.secretKeyRef)")
        for probe, path_ in (("startupProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            self.expect(get.get("path") == path_, here, f"{probe} must ask {path_}")
            self.expect(get.get("port", port) == port, here,
                        f"{probe} must use the container port {port}, the only one exposed")
        volumes = {v.get("name") for v in spec.get("volumes") or []}
        mounts = {m.get("mountPath"): m.get("name") for m in c.get("volumeMounts") or []}
        for path_, name in mounts.items():
            self.expect(name in volumes, here, f"mounts volume {name}, not declared")
        ca = value("POSTERN_REDIS_CA_CERT")
        if ca:
            self.expect(any(ca.startswith(m.rstrip("/") + "/") for m in mounts), here,
                        f"POSTERN_REDIS_CA_CERT {ca} is under no volume mount")

    # ---- ECS -----------------------------------------------------------

    def ecs(self):
        path = self.infra / "ecs/task-definition.json"
        where = self.rel(path)
        self.scan_tokens(path)
        doc = self.load(path)
        if not isinstance(doc, dict):
            return
        self.expect(str(doc.get("taskRoleArn", "")).startswith("arn:aws:iam::"), where,
                    "taskRoleArn is needed: the gateway reaches DynamoDB with the task role")
        self.expect(str(doc.get("executionRoleArn", "")).startswith("arn:aws:iam::"), where,
                    "executionRoleArn is needed to read the secrets and pull the image")
        gateways = [c for c in doc.get("containerDefinitions") or []
                    if self.program_of(c.get("image")) == "gateway"]
        if not self.expect(gateways, where, "no postern-gateway container"):
            return
        c = gateways[0]
        here = f"{where}: containerDefinitions[{c.get('name')}]"
        env = {e["name"]: e.get("value") for e in c.get("environment") or []}
        secrets = {s["name"]: s.get("valueFrom") for s in c.get("secrets") or []}
        for name in list(env) + list(secrets):
            self.check_var(here, name, "gateway")
        for name in STATIC_AWS_KEYS & (set(env) | set(secrets)):
            self.fail(here, f"{name}: no static AWS keys; the task role's credentials come "
                      "from the container credentials endpoint")
        for name in SECRET_VARS:
            self.expect(name in secrets and name not in env, here,
                        f"{name} must come from Secrets Manager (secrets), not environment")
        for name, arn in secrets.items():
            self.expect(str(arn).startswith(("arn:aws:secretsmanager:", "arn:aws:ssm:")),
                        here, f"secret {name} is not a Secrets Manager or SSM ARN")
        mapped = {p.get("containerPort") for p in c.get("portMappings") or []}
        for var, default in (("POSTERN_LISTEN_ADDR", 8443), ("POSTERN_PEER_ADDR", 8444),
                             ("POSTERN_INTERNAL_ADDR", 9090)):
            port = self.port_of(env.get(var)) or default
            self.expect(port in mapped, here, f"no port mapping for {var}'s port {port}")
        self.expect(env.get("POSTERN_PEER_TRANSPORT", "direct") == "direct", here,
                    "tasks can dial each other: POSTERN_PEER_TRANSPORT should be direct")
        grace_s = int(env.get("POSTERN_DRAIN_GRACE_MS", 30000)) / 1000
        stop = c.get("stopTimeout")
        self.expect(isinstance(stop, int) and grace_s + 5 <= stop <= 120, here,
                    f"stopTimeout {stop} must cover POSTERN_DRAIN_GRACE_MS ({grace_s:g} s) plus "
                    "a few seconds to withdraw and exit, and Fargate allows at most 120")
        logs = c.get("logConfiguration") or {}
        self.expect(logs.get("logDriver") == "awslogs", here, "logDriver must be awslogs")
        self.expect(env.get("POSTERN_LOG_FORMAT", "json") == "json", here,
                    "POSTERN_LOG_FORMAT must be json for CloudWatch")
        self.expect(c.get("readonlyRootFilesystem") is True, here,
                    "readonlyRootFilesystem must be true")
        uid = str(c.get("user", "65532")).split(":")[0]
        self.expect(uid.isdigit() and int(uid) != 0, here, "user must be a non-root uid")
        command = (c.get("healthCheck") or {}).get("command") or []
        if self.expect(len(command) >= 3 and command[0] == "CMD", here,
                       "healthCheck.command must be [\"CMD\", program, URL]: no shell in "
                       "the image"):
            dockerfile = (self.infra / "Dockerfile.gateway").read_text()
            self.expect(f" {command[1]}" in dockerfile, here, f"the health check runs "
                        f"{command[1]}, which Dockerfile.gateway does not copy in")
            port = self.port_of(re.sub(r"^http://|/.*$", "", command[2]))
            internal = self.port_of(env.get("POSTERN_INTERNAL_ADDR")) or 9090
            self.expect(port == internal, here, f"the health check asks port {port}, the "
                        f"internal port is {internal}")

    # ---- Kubernetes ----------------------------------------------------

    def kubernetes(self):
        base = self.infra / "k8s/agent"
        kpath = base / "kustomization.yaml"
        where = self.rel(kpath)
        kust = self.load(kpath)
        if not isinstance(kust, dict):
            return
        docs = []
        for res in kust.get("resources") or []:
            path = base / res
            if not self.expect(path.is_file(), where, f"resource {res} does not exist"):
                continue
            self.scan_tokens(path)
            for doc in self.load(path, many=True) or []:
                self.expect(isinstance(doc, dict) and doc.get("apiVersion")
                            and doc.get("kind"), self.rel(path), "a document without "
                            "apiVersion and kind")
                docs.append((self.rel(path), doc))
        images = {i.get("name") for i in kust.get("images") or []}
        secrets = {}
        for _, doc in docs:
            if doc.get("kind") == "Secret":
                data = {**(doc.get("data") or {}), **(doc.get("stringData") or {})}
                secrets[doc["metadata"]["name"]] = set(data)
            self.expect(doc.get("kind") not in ("Service", "Ingress"), where,
                        f"{doc.get('kind')} {doc['metadata'].get('name')}: the agent only "
                        "dials out; nothing may reach it")
        deployments = [(p, d) for p, d in docs if d.get("kind") == "Deployment"]
        if not self.expect(deployments, where, "no Deployment"):
            return
        for path, dep in deployments:
            spec = dep.get("spec") or {}
            self.expect(spec.get("replicas") == 2, path, "replicas must be 2")
            pod = (spec.get("template") or {}).get("spec") or {}
            psc = pod.get("securityContext") or {}
            self.expect(psc.get("runAsNonRoot") is True, path,
                        "securityContext.runAsNonRoot must be true")
            self.expect(int(psc.get("runAsUser", 0)) != 0, path,
                        "securityContext.runAsUser must be a non-root uid (65532)")
            volumes = {v.get("name") for v in pod.get("volumes") or []}
            for c in pod.get("containers") or []:
                here = f"{path}: containers[{c.get('name')}]"
                self.expect(self.program_of(c.get("image")) == "agent", here,
                            "the image is not postern-agent")
                self.expect(c.get("image") in images, here, f"image {c.get('image')} is not "
                            "set by the kustomization's images:")
                sc = c.get("securityContext") or {}
                self.expect(sc.get("readOnlyRootFilesystem") is True, here,
                            "readOnlyRootFilesystem must be true")
                self.expect(sc.get("allowPrivilegeEscalation") is False, here,
                            "allowPrivilegeEscalation must be false")
                limits = (c.get("resources") or {}).get("limits") or {}
                self.expect("cpu" in limits and "memory" in limits, here,
                            "resources.limits must set cpu and memory")
                for e in c.get("env") or []:
                    self.check_var(f"{here}.env", e.get("name", ""), "agent")
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref and not ref.get("optional"):
                        self.expect(ref.get("key") in secrets.get(ref.get("name"), set()),
                                    here, f"{e.get('name')} reads key {ref.get('key')} of "
                                    f"Secret {ref.get('name')}, which the resources do "
                                    "not define")
                for m in c.get("volumeMounts") or []:
                    self.expect(m.get("name") in volumes, here,
                                f"mounts volume {m.get('name')}, not declared")
