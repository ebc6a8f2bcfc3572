"""Dockerfiles and the build context."""

import json
import re


class ImageChecks:
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
