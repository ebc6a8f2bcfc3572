"""Shared parts of infra/check: the variables the programs read, loading,
failures, and the small parsers every file's checks use."""

import json
import re
from pathlib import Path

import yaml

# Variables a manifest may name before the code reads them (a change landing
# on another branch): a warning, not a failure, until then. None pending now.
PENDING: set[str] = set()

# Variables that only configure the direct peer port (gateway/src/config/cluster.rs).
DIRECT_ONLY = {"POSTERN_PEER_ADDR", "POSTERN_PEER_ADVERTISE_ADDR",
               "POSTERN_PEER_TLS_DISABLED", "POSTERN_PEER_CONNECTIONS"}
# Values that must come from a secret store, never a manifest's plain text.
SECRET_VARS = {"POSTERN_PEER_SECRET", "POSTERN_BOOTSTRAP_ADMIN_TOKEN", "POSTERN_REDIS_URL"}
STATIC_AWS_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}

VAR_TOKEN = re.compile(r"\bPOSTERN_[A-Z0-9_]*[A-Z0-9]\b")


class Base:
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
            self.fail("infra/checks/base.py", "found no POSTERN_* names in the gateway or agent "
                      "configuration code: did it move? (see Base.__init__)")

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
