"""infra/compose: the local cluster."""

import re


class ComposeChecks:
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
