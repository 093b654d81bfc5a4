#!/usr/bin/env python3
"""Builds bench/corpus/fortunes-200.txt: the embedding benchmark corpus.

The first 200 entries of 20-300 characters from the Debian `fortunes` package's science,
wisdom, computers and literature files (in that order), whitespace collapsed, one per line.
Needs `apt-get install fortunes`. The output is committed, so benchmarks need no install.
"""
import pathlib
import re

SRC = pathlib.Path("/usr/share/games/fortunes")
OUT = pathlib.Path(__file__).parent / "corpus" / "fortunes-200.txt"

entries = []
for name in ["science", "wisdom", "computers", "literature"]:
    text = (SRC / name).read_text(encoding="utf-8", errors="replace")
    for raw in text.split("\n%\n"):
        s = re.sub(r"\s+", " ", raw.replace("%", " ")).strip()
        if 20 <= len(s) <= 300:
            entries.append(s)
OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text("\n".join(entries[:200]) + "\n", encoding="utf-8")
print(f"wrote {min(200, len(entries))} sentences to {OUT}")
