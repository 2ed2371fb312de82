#!/usr/bin/env python3
"""Lints deploy/docker/Dockerfile where hadolint cannot be installed (no registry carries it
here): the syntax (instructions known, continuations closed, JSON-form commands valid JSON),
and the rules the image promises — pinned base images, a non-root numeric USER in the final
stage, exec-form ENTRYPOINT/CMD, apt without recommends and with its lists removed, no
`ADD` of URLs, no secrets in ENV/ARG. Exit 1 with one line per finding."""
import json
import re
import sys

KNOWN = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
         "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER"}


def instructions(text):
    """(line number, instruction, arguments), continuations joined, comments dropped."""
    out, buf, start = [], "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    if buf:
        out.append((start, "<unterminated>", buf))
    return out


def lint(text):
    problems, stages = [], []
    for n, word, rest in instructions(text):
        if word not in KNOWN:
            problems.append(f"{n}: unknown instruction {word}")
            continue
        if word == "FROM":
            image = rest.split()[0]
            stages.append({"from": image, "user": None, "line": n})
            if image != "scratch" and not any(s.get("name") == image for s in stages[:-1]):
                if ":" not in image.split("/")[-1] or image.endswith(":latest"):
                    problems.append(f"{n}: base image {image} is not pinned to a tag")
            m = re.search(r"\bAS\s+(\S+)", rest, re.I)
            if m:
                stages[-1]["name"] = m.group(1)
        elif word == "USER" and stages:
            stages[-1]["user"] = rest
        elif word in ("ENTRYPOINT", "CMD"):
            try:
                if not isinstance(json.loads(rest), list):
                    raise ValueError
            except ValueError:
                problems.append(f"{n}: {word} is not in exec (JSON array) form")
        elif word == "ADD" and re.search(r"https?://", rest):
            problems.append(f"{n}: ADD of a URL (use curl in RUN, with a checksum)")
        elif word in ("ENV", "ARG") and re.search(r"(PASSWORD|SECRET|TOKEN|KEY)\w*=", rest, re.I):
            problems.append(f"{n}: {word} carries what looks like a secret")
        elif word == "RUN" and "apt-get install" in rest:
            if "--no-install-recommends" not in rest:
                problems.append(f"{n}: apt-get install without --no-install-recommends")
            if "rm -rf /var/lib/apt/lists" not in rest:
                problems.append(f"{n}: apt lists not removed in the same layer")
    if not stages:
        problems.append("no FROM")
    else:
        user = stages[-1]["user"]
        if user is None:
            problems.append("final stage runs as root (no USER)")
        elif user.split(":")[0] in ("0", "root"):
            problems.append(f"final stage USER {user} is root")
    return problems


if __name__ == "__main__":
    failed = False
    for path in sys.argv[1:]:
        for p in lint(open(path).read()):
            print(f"{path}:{p}")
            failed = True
    sys.exit(1 if failed else 0)
