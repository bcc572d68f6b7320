#!/usr/bin/env python3
"""Checks the repository's Markdown: every relative link resolves (the file,
and the heading when the link names one), and every repository path a
document cites in backquotes exists. Exits 1 listing what does not.

    python3 tests/doc_links.py
"""
import os
import re
import subprocess
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\s]+)`")
# A cited path: directories and file names made of path characters, ending
# in an extension the repository uses, or in a slash.
PATH = re.compile(
    r"^(?:[\w.\-]+/)*[\w.\-]+\.(?:rs|md|sh|json|lua|js|mjs|yml|yaml|toml|py|html|svg|png)$"
    r"|^(?:[\w.\-]+/)+$"
)


def tracked_markdown():
    out = subprocess.run(
        ["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [p for p in out.split() if "node_modules/" not in p and "/vendor/" not in p]


def slug(heading):
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
    text = text.strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path):
    found, fenced = set(), False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                fenced = not fenced
            elif not fenced and line.startswith("#"):
                base = slug(line.lstrip("#"))
                name, n = base, 1
                while name in found:
                    name, n = f"{base}-{n}", n + 1
                found.add(name)
    return found


def prose(path):
    """The lines of a Markdown file outside fenced code blocks."""
    fenced = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.startswith("```"):
                fenced = not fenced
            elif not fenced:
                yield number, line


def exists(cited, doc_dir):
    cited = cited.rstrip("/")
    return any(
        os.path.exists(os.path.join(base, cited)) for base in (ROOT, doc_dir)
    )


def main():
    problems = []
    for doc in tracked_markdown():
        doc_path = os.path.join(ROOT, doc)
        doc_dir = os.path.dirname(doc_path)
        for number, line in prose(doc_path):
            where = f"{doc}:{number}"
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target):
                    continue
                file_part, _, anchor = target.partition("#")
                target_path = os.path.normpath(os.path.join(doc_dir, file_part)) if file_part else doc_path
                if not os.path.exists(target_path):
                    problems.append(f"{where}: link to a missing file: {target}")
                elif anchor and target_path.endswith(".md") and anchor not in anchors(target_path):
                    problems.append(f"{where}: link to a missing heading: {target}")
            for cited in CODE.findall(line):
                if "*" in cited or "<" in cited or "{" in cited:
                    continue
                if PATH.match(cited) and "/" in cited.rstrip("/") or cited.endswith(".md"):
                    if not exists(cited, doc_dir):
                        problems.append(f"{where}: cites a missing file: {cited}")
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
