r"""Writes BENCHMARKS.md's tables from the JSON the benchmarks write.

A benchmark that writes its rows to a JSON file (`--out=docs/....json`) has
its tables in BENCHMARKS.md between `<!-- report:NAME -->` and
`<!-- /report:NAME -->`; this script makes them from the files, each headed
by the commit, machine and date the file records, so a table and its run
cannot drift apart (tests/test_benchmarks.py checks the committed file).

  python benchmarks/report.py            # prints the generated blocks
  python benchmarks/report.py --update   # rewrites them in BENCHMARKS.md

Example:

>>> print(render("tflite_export", load("docs/tflite_export.json")))
"""

import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# {block name: the JSON file it is made from, relative to the repository}.
SOURCES = {
    "tflite_export": "docs/tflite_export.json",
    "tflite_export_keras3": "docs/tflite_export_keras3.json",
}
_BLOCK = re.compile(r"(<!-- report:(?P<name>[\w-]+) -->\n)(.*?)"
                    r"(<!-- /report:(?P=name) -->)", re.S)


def load(path):
  """The JSON at `path` (relative to the repository root)."""
  with open(os.path.join(ROOT, path), encoding="utf-8") as f:
    return json.load(f)


def meta_line(meta):
  """One line: which commit, machine and date gave the numbers."""
  if not meta:
    return "*Run: commit, machine and date not recorded in the file.*"
  return (f"*Run: commit {meta.get('commit', '?')}, "
          f"{meta.get('machine', '?')}, {meta.get('date', '?')}.*")


def _kib(n):
  return f"{n / 1024:.1f} KiB"


def _yes(flag):
  return "yes" if flag else "no"


def run_meta(machine):
  """What a benchmark's JSON records of its run: commit, machine, date.

  Args:
    machine: the benchmark's one-line description of the machine.
  """
  import datetime  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  try:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
        text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    commit = "unknown"
  return {"commit": commit, "machine": machine,
          "date": datetime.datetime.now(datetime.timezone.utc).strftime(
              "%Y-%m-%d")}


def tflite_tables(data):
  """The size and latency tables of `benchmarks/tflite_export.py` rows."""
  out = []
  if data.get("sizes"):
    out += ["| model | sparsity | type | bytes | gzip | dense float | x "
            "smaller (gzip) | stored sparse | runs on XNNPACK | LiteRT acc | "
            "Keras acc |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in data.get("sizes", []):
    out.append(
        f"| {r['model']} | {r['sparsity']} | {r['type']} | "
        f"{_kib(r['bytes'])} | {_kib(r['gzip_bytes'])} | "
        f"{_kib(r['dense_bytes'])} | {r['size_ratio']:.1f} "
        f"({r['gzip_ratio']:.1f}) | {_yes(r['sparse_encoding'])} | "
        f"{_yes(r['default_delegates'])} | {r['accuracy']:.4f} | "
        f"{r['keras_accuracy']:.4f} |")
  if data.get("latency"):
    if out:
      out.append("")  # a blank line between the two tables
    out += ["| model | threads | dense (ms) | sparse (ms) | sparse / dense | "
            "DENSIFY ops | sparse tensors (zeros) |",
            "|---|---|---|---|---|---|---|"]
    for r in data["latency"]:
      out.append(
          f"| {r['model']} | {r['threads']} | {r['dense_ms']:.3f} | "
          f"{r['sparse_ms']:.3f} | {r['sparse_over_dense']:.3f} | "
          f"{r['densify_ops']} | {r['sparse_tensors']} "
          f"({r['zeros_in_sparse_tensors']:.2f}) |")
  return "\n".join(out)


RENDERERS = {"tflite_export": tflite_tables,
             "tflite_export_keras3": tflite_tables}


def render(name, data):
  """Block `name` made from `data`: the run's line, then its tables."""
  return (f"{meta_line(data.get('meta'))}\n\n{RENDERERS[name](data)}\n"
          f"\nMade by `python benchmarks/report.py --update` from "
          f"`{SOURCES[name]}`.\n")


def update(text, blocks):
  """`text` with each `<!-- report:NAME -->` block replaced by blocks[NAME].

  Raises:
    ValueError: a block in `text` that `blocks` does not have.
  """
  def fill(m):
    if m.group("name") not in blocks:
      raise ValueError(f"No report named {m.group('name')!r}; known: "
                       f"{sorted(blocks)}.")
    return m.group(1) + blocks[m.group("name")] + m.group(4)
  return _BLOCK.sub(fill, text)


def blocks():
  """Every block, made from the JSON files in the repository."""
  return {name: render(name, load(path)) for name, path in SOURCES.items()}


def main(argv):
  made = blocks()
  if argv[1:] == ["--update"]:
    path = os.path.join(ROOT, "BENCHMARKS.md")
    with open(path, encoding="utf-8") as f:
      text = f.read()
    with open(path, "w", encoding="utf-8") as f:
      f.write(update(text, made))
  elif argv[1:]:
    raise SystemExit("usage: python benchmarks/report.py [--update]")
  else:
    for name, block in made.items():
      print(f"<!-- report:{name} -->\n{block}<!-- /report:{name} -->\n")


if __name__ == "__main__":
  main(sys.argv)
