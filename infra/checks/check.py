"""Offline checks of the deployment files under infra/ (run by infra/check).
The checks live beside it: images.py, compose.py, platforms.py; selftest.py
breaks each rule once.

Every manifest parses; every POSTERN_* variable it names is one the program
reads (found by grepping the configuration code); the Dockerfiles' bases and
users; the compose services, the Cloud Run service, the ECS task definition and
the Kubernetes manifests agree with each other and with the gateway's rules.
Each failure names the file and the place in it.
"""

import sys
from pathlib import Path

from base import PENDING, Base
from compose import ComposeChecks
from images import ImageChecks
from platforms import PlatformChecks
from selftest import self_test


class Checker(Base, ImageChecks, ComposeChecks, PlatformChecks):
    def run(self):
        for name in sorted(PENDING & self.gateway_vars):
            self.warnings.append(f"infra/checks/base.py: {name} is read by the gateway now: "
                                 "drop it from PENDING")
        self.dockerfiles()
        self.dockerignore()
        self.compose()
        self.cloud_run()
        self.ecs()
        self.kubernetes()
        return self.errors, self.warnings


def main(argv):
    root = Path(__file__).resolve().parents[2]
    if argv[1:] == ["--self-test"]:
        return self_test(root, Checker)
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
