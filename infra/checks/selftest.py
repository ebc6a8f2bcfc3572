"""infra/check --self-test: break each rule once on a copy, expect a failure."""

import shutil
import sys
import tempfile
from pathlib import Path

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


def self_test(root, checker):
    """Runs every mutation on a copy of infra/ (and the code it greps) through
    `checker` (the Checker class)."""
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
            if (path.is_file() and "target" not in path.parts and "__pycache__" not in path.parts
                    and path.suffix != ".rs"):
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
            errors, _ = checker(tmp).run()
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
