"""Offline checks of the deployment files under infra/ (run by infra/check).

Every manifest parses; every POSTERN_* variable it names is one the program
reads (found by grepping the configuration code); the Dockerfiles' bases and
users; the compose services, the Cloud Run service, the ECS task definition and
the Kubernetes manifests agree with each other and with the gateway's rules.
Each failure names the file and the place in it.
"""

import json
import re
import sys
from pathlib import Path

import yaml

# Gateway variables being added on another branch at the time of writing
# (PEM contents in the environment, a CA for rediss://). Named in manifests;
# a warning, not a failure, until the code reads them.
PENDING = {"POSTERN_TLS_CERT_PEM", "POSTERN_TLS_KEY_PEM", "POSTERN_REDIS_CA_CERT"}

# Variables that only configure the direct peer port (gateway/src/config/cluster.rs).
DIRECT_ONLY = {"POSTERN_PEER_ADDR", "POSTERN_PEER_ADVERTISE_ADDR",
               "POSTERN_PEER_TLS_DISABLED", "POSTERN_PEER_CONNECTIONS"}
# Values that must come from a secret store, never a manifest's plain text.
SECRET_VARS = {"POSTERN_PEER_SECRET", "POSTERN_BOOTSTRAP_ADMIN_TOKEN", "POSTERN_REDIS_URL"}
STATIC_AWS_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}

VAR_TOKEN = re.compile(r"\bPOSTERN_[A-Z0-9_]*[A-Z0-9]\b")


class Checker:
    def __init__(self, root):
        self.root = Path(root)
        self.infra = self.root / "infra"
        self.errors = []
        self.warnings = []
        self.checks = 0
        self.gateway_vars = self._vars(["gateway/src/config", "gateway/src/main.rs"])
        self.agent_vars = self._vars(["agent/src/config.rs"])
        prefix = re.search(r'ENV_PREFIX: &str = "(POSTERN_[A-Z_]+)"',
                           (self.root / "agent/src/pg/credentials.rs").read_text())
        self.agent_prefixes = [prefix.group(1)] if prefix else []
        if not self.gateway_vars or not self.agent_vars:
            self.fail("infra/check.py", "found no POSTERN_* names in the gateway or agent "
                      "configuration code: did it move? (see Checker.__init__)")

    # ---- helpers -------------------------------------------------------

    def _vars(self, paths):
        names = set()
        for rel in paths:
            path = self.root / rel
            files = sorted(path.rglob("*.rs")) if path.is_dir() else [path]
            for f in files:
                names.update(re.findall(r'"(POSTERN_[A-Z0-9_]+)"', f.read_text()))
        return names

    def rel(self, path):
        return str(Path(path).relative_to(self.root))

    def fail(self, where, message):
        self.errors.append(f"{where}: {message}")

    def expect(self, condition, where, message):
        self.checks += 1
        if not condition:
            self.fail(where, message)
        return condition

    def load(self, path, many=False):
        """Parses a JSON or YAML file; None (and a failure) if it does not."""
        self.checks += 1
        try:
            text = path.read_text()
            if path.suffix == ".json":
                return json.loads(text)
            docs = list(yaml.safe_load_all(text))
            return [d for d in docs if d is not None] if many else docs[0]
        except (OSError, ValueError, yaml.YAMLError, IndexError) as e:
            self.fail(self.rel(path), f"does not parse: {e}")
            return None

    def program_of(self, image):
        image = str(image or "")
        if "postern-gateway" in image:
            return "gateway"
        if "postern-agent" in image:
            return "agent"
        return None

    def check_var(self, where, name, program):
        """`name` is set for `program` ('gateway', 'agent' or None: not Postern)."""
        self.checks += 1
        if not name.startswith("POSTERN_"):
            return
        if program is None:
            self.fail(where, f"{name} is set on a container that is not Postern's")
        elif program == "gateway":
            if name in self.gateway_vars:
                return
            if name in PENDING:
                self.warnings.append(f"{where}: {name} is not read by the gateway yet "
                                     "(pending on another branch)")
                return
            self.fail(where, f"{name} is not a variable postern-gateway reads "
                             "(not found in gateway/src/config/ or gateway/src/main.rs)")
        elif name not in self.agent_vars and not any(
                name.startswith(p) for p in self.agent_prefixes):
            self.fail(where, f"{name} is not a variable postern-agent reads "
                             "(not found in agent/src/config.rs, nor a POSTERN_CRED_ name)")

    def scan_tokens(self, path):
        """Every POSTERN_ name anywhere in the file (comments too) is real."""
        known = self.gateway_vars | self.agent_vars | PENDING
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for name in VAR_TOKEN.findall(line):
                self.checks += 1
                if name in known or any(name.startswith(p) for p in self.agent_prefixes):
                    continue
                self.fail(f"{self.rel(path)}:{lineno}", f"{name} is read by neither "
                          "postern-gateway nor postern-agent (a typo or a stale name?)")

    @staticmethod
    def port_of(addr):
        m = re.fullmatch(r"\[?[0-9a-fA-F.:]*\]?:(\d+)", str(addr or ""))
        return int(m.group(1)) if m else None

    @staticmethod
    def host_port(url):
        """host, port of scheme://[user[:pass]@]host[:port][/...]."""
        # Interpolations (${VAR:?message}) may hold anything: out of the way first.
        url = re.sub(r"\$\{[^}]*\}", "X", str(url))
        m = re.match(r"^[a-z+]+://(?:[^@/]*@)?([^:/?]+)(?::(\d+))?", url)
        if not m:
            return None, None
        return m.group(1), int(m.group(2)) if m.group(2) else None

    # ---- Dockerfiles ---------------------------------------------------

    def dockerfiles(self):
        paths = sorted(self.infra.glob("Dockerfile.*"))
        self.expect(len(paths) >= 3, "infra/", "expected Dockerfile.gateway, Dockerfile.agent "
                    "and Dockerfile.scratch")
        for path in paths:
            self.dockerfile(path)

    def dockerfile(self, path):
        where = self.rel(path)
        self.scan_tokens(path)
        args, stages, current = {}, [], None
        # Join continuation lines, drop comments.
        logical, buf = [], ""
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("#"):
                continue
            buf += line.rstrip("\\") + " " if line.endswith("\\") else line
            if not line.endswith("\\"):
                if buf.strip():
                    logical.append(buf.strip())
                buf = ""
        for line in logical:
            op, _, rest = line.partition(" ")
            op = op.upper()
            if op == "ARG" and current is None:
                name, _, default = rest.partition("=")
                args[name.strip()] = default.strip()
            elif op == "FROM":
                words = rest.split()
                image = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                               lambda m: args.get(m.group(1) or m.group(2), ""), words[0])
                name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
                current = {"image": image, "name": name, "user": None, "entrypoint": None,
                           "copied": set(), "healthcheck": None}
                stages.append(current)
                earlier = {s["name"] for s in stages[:-1]}
                pinned = (image == "scratch" or image in earlier or "@sha256:" in image
                          or (":" in image.rsplit("/", 1)[-1]
                              and not image.endswith(":latest")))
                self.expect(pinned, where, f"FROM {words[0]} (= {image or '?'}) is not "
                            "pinned to a tag or digest (nor :latest)")
            elif current is None:
                continue
            elif op == "USER":
                current["user"] = rest.strip()
            elif op == "COPY":
                parts = [p for p in rest.split() if not p.startswith("--")]
                if parts:
                    current["copied"].add(parts[-1])
            elif op == "ENTRYPOINT":
                try:
                    current["entrypoint"] = json.loads(rest)
                except ValueError:
                    self.fail(where, f"ENTRYPOINT {rest} is not in exec (JSON) form: "
                              "signals would go to a shell, not the program")
            elif op == "HEALTHCHECK":
                m = re.search(r"CMD\s+(\[.*\])", rest)
                current["healthcheck"] = json.loads(m.group(1)) if m else None
        runtime = [s for s in stages if s["entrypoint"]]
        self.expect(runtime, where, "no stage with an ENTRYPOINT")
        for stage in runtime:
            label = f"{where} (stage {stage['name'] or stage['image']})"
            user = stage["user"] or ""
            uid = user.split(":")[0]
            self.expect(uid.isdigit() and int(uid) != 0, label,
                        f"USER must be a numeric non-root uid (e.g. 65532:65532), not {user!r}")
            for what, argv in (("ENTRYPOINT", stage["entrypoint"]),
                               ("HEALTHCHECK", stage["healthcheck"])):
                if argv:
                    self.expect(argv[0] in stage["copied"], label,
                                f"{what} runs {argv[0]}, which no COPY in this stage puts there")

    def dockerignore(self):
        """The images build workspace members: none may be left out of the context."""
        import fnmatch

        where = ".dockerignore"
        lines = [line.strip() for line in (self.root / where).read_text().splitlines()]
        rules = [line for line in lines if line and not line.startswith("#")]
        manifest = (self.root / "Cargo.toml").read_text()
        members = re.findall(r'"([^"]+)"', re.search(r"members\s*=\s*\[([^]]*)\]",
                                                    manifest).group(1))
        for member in members + ["Cargo.toml", "Cargo.lock"]:
            parts = member.split("/")
            excluded = False
            # Docker's rule: the last matching pattern wins; a directory's
            # pattern covers what is under it.
            for rule in rules:
                negate = rule.startswith("!")
                pattern = rule.lstrip("!").rstrip("/")
                if any(fnmatch.fnmatch("/".join(parts[:i]), pattern)
                       for i in range(1, len(parts) + 1)):
                    excluded = not negate
            self.expect(not excluded, where, f"leaves the workspace member {member} out of "
                        "the build context: cargo cannot load the workspace")

    # ---- compose -------------------------------------------------------

    def compose(self):
        path = self.infra / "compose/compose.yaml"
        where = self.rel(path)
        self.scan_tokens(path)
        doc = self.load(path)
        if not isinstance(doc, dict):
            return
        services = doc.get("services") or {}
        volumes = set((doc.get("volumes") or {}).keys())
        aliases = {}
        for name, svc in services.items():
            aliases.setdefault(name, set()).add(name)
            for net in (svc.get("networks") or {}).values() if isinstance(
                    svc.get("networks"), dict) else []:
                for alias in (net or {}).get("aliases", []):
                    aliases.setdefault(alias, set()).add(name)
        # Ports each service listens on inside the network.
        listens = {"redis": {6379}, "postgres": {5432}, "target-db": {5432}}
        gateways = {n: s for n, s in services.items()
                    if self.program_of(s.get("image")) == "gateway"}
        for name, svc in gateways.items():
            listens[name] = {self.port_of((svc.get("environment") or {})
                                          .get("POSTERN_LISTEN_ADDR"))}

        def reaches(where_, value, var):
            host, port = self.host_port(value) if "://" in value else (
                value.rsplit(":", 1)[0], int(value.rsplit(":", 1)[1]))
            if not self.expect(host in aliases, where_,
                               f"{var} names host {host!r}, which is no service or alias"):
                return
            for target in aliases[host]:
                ports = listens.get(target)
                if ports and port is not None:
                    self.expect(port in ports, where_, f"{var} dials {host}:{port}, but "
                                f"{target} listens on {sorted(ports)}")

        interpolated = set(re.findall(r"\$\{(\w+):\?", path.read_text()))
        up = (self.infra / "compose/up").read_text()
        for var in sorted(interpolated):
            self.expect(f'echo "{var}=' in up, where, f"${{{var}}} is required but "
                        "infra/compose/up does not write it to .env")

        published = {}
        for name, svc in services.items():
            here = f"{where}: services.{name}"
            program = self.program_of(svc.get("image"))
            env = svc.get("environment") or {}
            if isinstance(env, list):
                env = dict(e.split("=", 1) for e in env)
            for var in env:
                self.check_var(f"{here}.environment", var, program)
            deps = svc.get("depends_on") or {}
            for dep, cond in (deps.items() if isinstance(deps, dict) else
                              ((d, {}) for d in deps)):
                if not self.expect(dep in services, here, f"depends_on {dep}: no such service"):
                    continue
                if (cond or {}).get("condition") == "service_healthy":
                    self.expect(services[dep].get("healthcheck"), here, f"waits for {dep} "
                                "to be healthy, but it has no healthcheck")
            for mount in svc.get("volumes") or []:
                source = str(mount).split(":")[0]
                if source.startswith("."):
                    self.expect((path.parent / source).exists(), here,
                                f"mounts {source}, which does not exist")
                else:
                    self.expect(source in volumes, here,
                                f"mounts volume {source}, not declared under volumes:")
            for port in svc.get("ports") or []:
                host_side = ":".join(str(port).split(":")[:-1])
                self.expect(host_side not in published, here, f"publishes {host_side}, "
                            f"already published by {published.get(host_side)}")
                published[host_side] = name
            for var in ("POSTERN_REDIS_URL", "POSTERN_POLICY_STORE", "POSTERN_GATEWAY_URL"):
                if var in env and "://" in str(env[var]) and not str(env[var]).startswith(
                        "sqlite"):
                    reaches(f"{here}.environment.{var}", str(env[var]), var)
            for target in str(env.get("POSTERN_ALLOWED_TARGETS", "")).split(","):
                if target and "*" not in target:
                    reaches(f"{here}.environment.POSTERN_ALLOWED_TARGETS", target,
                            "POSTERN_ALLOWED_TARGETS")
            # Secrets come from .env; so does any password inside a URL.
            for var, value in env.items():
                value = str(value)
                if var in ("POSTERN_PEER_SECRET", "POSTERN_BOOTSTRAP_ADMIN_TOKEN") or (
                        re.match(r"^[a-z+]+://[^@/]*:[^@]*@", value)):
                    self.expect(re.search(r"\$\{\w+", value), f"{here}.environment.{var}",
                                "holds a secret written in the file: take it from .env (${...})")

        self.expect(len(gateways) >= 3, where, f"expected 3 gateway replicas, found "
                    f"{len(gateways)}")
        envs = {n: (s.get("environment") or {}) for n, s in gateways.items()}
        for var in ("POSTERN_PEER_SECRET", "POSTERN_REDIS_URL", "POSTERN_POLICY_STORE"):
            values = {str(e.get(var)) for e in envs.values()}
            self.expect(len(values) == 1 and "None" not in values, where,
                        f"the gateway replicas must share one {var}, they have {sorted(values)}")
        ids = [e.get("POSTERN_REPLICA_ID") for e in envs.values()]
        self.expect(len(set(ids)) == len(ids), where,
                    f"gateway replicas need distinct POSTERN_REPLICA_IDs, not {ids}")
        agents = [n for n, s in services.items() if self.program_of(s.get("image")) == "agent"]
        self.expect(agents, where, "no agent service")

    # ---- Cloud Run -----------------------------------------------------

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

    def run(self):
        for name in sorted(PENDING & self.gateway_vars):
            self.warnings.append(f"infra/check.py: {name} is read by the gateway now: "
                                 "drop it from PENDING")
        self.dockerfiles()
        self.dockerignore()
        self.compose()
        self.cloud_run()
        self.ecs()
        self.kubernetes()
        return self.errors, self.warnings


# (file under infra/, text to replace, its replacement, what the failure must say):
# each breaks one rule, and the checker must notice it.
MUTATIONS = [
    ("compose/compose.yaml", "POSTERN_REDIS_URL: redis", "POSTERN_REDIS_ULR: redis",
     "POSTERN_REDIS_ULR is not a variable postern-gateway reads"),
    ("compose/compose.yaml", "gateway-3: { condition: service_healthy }",
     "gateway-4: { condition: service_healthy }", "depends_on gateway-4: no such service"),
    ("compose/compose.yaml", "http://gateway:8443", "http://gateway:9443",
     "dials gateway:9443"),
    ("compose/compose.yaml", "redis://redis:6379", "redis://cache:6379",
     "names host 'cache'"),
    ("compose/compose.yaml", "POSTERN_REPLICA_ID: gw-3", "POSTERN_REPLICA_ID: gw-2",
     "distinct POSTERN_REPLICA_IDs"),
    ("compose/compose.yaml", "  redis:\n    image: redis:7.4-alpine",
     "  redis:\n    image: redis:7.4-alpine\n    environment: {POSTERN_PEER_SECRET: x}",
     "set on a container that is not Postern's"),
    ("Dockerfile.gateway", "USER 65532:65532", "USER root", "numeric non-root uid"),
    ("../.dockerignore", "!infra/probe\n", "", "leaves the workspace member infra/probe out"),
    ("Dockerfile.agent", "static-debian12:nonroot", "static-debian12", "is not pinned"),
    ("Dockerfile.scratch", "COPY bin/postern-probe /usr/local/bin/postern-probe\n", "",
     "HEALTHCHECK runs /usr/local/bin/postern-probe"),
    ("cloudrun/service.yaml", "timeoutSeconds: 3600", "timeoutSeconds: 300",
     "timeoutSeconds must be 3600"),
    ("cloudrun/service.yaml", "- name: POSTERN_TLS_DISABLED",
     "- name: POSTERN_PEER_ADDR\n              value: 0.0.0.0:8444\n"
     "            - name: POSTERN_TLS_DISABLED", "configures the direct peer port"),
    ("cloudrun/service.yaml", "name: h2c", "name: http1", "named h2c"),
    ("cloudrun/service.yaml", "kind: Service", "kind: Service\n  - : [", "does not parse"),
    ("ecs/task-definition.json", '"stopTimeout": 45', '"stopTimeout": 20',
     "stopTimeout 20 must cover"),
    ("ecs/task-definition.json", '"environment": [',
     '"environment": [\n        { "name": "AWS_ACCESS_KEY_ID", "value": "AKIA" },',
     "no static AWS keys"),
    ("ecs/task-definition.json", '{ "name": "peer", "containerPort": 8444, "protocol": "tcp" },',
     "", "no port mapping for POSTERN_PEER_ADDR"),
    ("ecs/task-definition.json", '"family"', '"family": 1,, "x"', "does not parse"),
    ("k8s/agent/deployment.yaml", "replicas: 2", "replicas: 3", "replicas must be 2"),
    ("k8s/agent/deployment.yaml", "readOnlyRootFilesystem: true",
     "readOnlyRootFilesystem: false", "readOnlyRootFilesystem must be true"),
    ("k8s/agent/deployment.yaml", "key: POSTERN_AGENT_TOKEN", "key: TOKEN",
     "reads key TOKEN of Secret postern-agent"),
    ("k8s/agent/secret.yaml", "# The agent's token", "# POSTERN_AGENT_TOKNE: the agent's token",
     "POSTERN_AGENT_TOKNE is read by neither"),
]


def self_test(root):
    """Runs every mutation on a copy of infra/ (and the code it greps)."""
    import shutil
    import tempfile

    failures = 0
    with tempfile.TemporaryDirectory(prefix="postern-infra-check-") as tmp:
        tmp = Path(tmp)
        for rel in ("gateway/src/config", "gateway/src/main.rs", "agent/src/config.rs",
                    "agent/src/pg/credentials.rs", "Cargo.toml"):
            src, dst = root / rel, tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
        pristine = {Path(".dockerignore"): (root / ".dockerignore").read_text()}
        for path in (root / "infra").rglob("*"):
            if path.is_file() and "target" not in path.parts and path.suffix != ".rs":
                pristine[path.relative_to(root)] = path.read_text()
        for rel_file, old, new, expected in MUTATIONS:
            for rel, text in pristine.items():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_text(text)
            target = tmp / "infra" / rel_file
            text = target.read_text()
            if old not in text:
                print(f"self-test: {rel_file} no longer contains {old!r}: update MUTATIONS",
                      file=sys.stderr)
                failures += 1
                continue
            target.write_text(text.replace(old, new, 1))
            errors, _ = Checker(tmp).run()
            if not any(expected in e for e in errors):
                print(f"self-test: breaking {rel_file} ({old!r} -> {new!r}) was not reported "
                      f"as {expected!r}; errors: {errors}", file=sys.stderr)
                failures += 1
    if failures:
        print(f"infra/check --self-test: {failures} of {len(MUTATIONS)} mutations missed",
              file=sys.stderr)
        return 1
    print(f"infra/check --self-test: all {len(MUTATIONS)} mutations reported")
    return 0


def main(argv):
    root = Path(__file__).resolve().parent.parent
    if argv[1:] == ["--self-test"]:
        return self_test(root)
    if len(argv) > 1:
        root = Path(argv[1])
    checker = Checker(root)
    errors, warnings = checker.run()
    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        print(f"infra/check: {len(errors)} problem(s) in {checker.checks} checks",
              file=sys.stderr)
        return 1
    print(f"infra/check: ok ({checker.checks} checks)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
